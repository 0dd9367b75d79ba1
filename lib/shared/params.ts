import { textRule, urlRule } from "./text-rules";

/**
 * Params rules more than one service takes (fastest-validator schemas). Every text a
 * person is shown and every URL goes through textRule / urlRule (lib/shared/text-rules.ts).
 */

/** An id in a path: opaque, bounded. */
export const idParam = { type: "string" as const, min: 1, max: 64 };

/** An account: a user id or a linked wallet's 0x address. */
export const accountParam = { type: "string" as const, trim: true, min: 1, max: 128 };

/** An internal action a saga step calls: the document it acts on and the saga acting. */
export const sagaStepParams = { $$strict: "remove" as const, id: idParam, sagaId: idParam };

/** `?limit=` (1–100, default 20) and `?offset=` of a list (docs/api.md "Lists"). */
export const pageParams = {
  limit: {
    type: "number" as const,
    integer: true,
    convert: true,
    min: 1,
    max: 100,
    optional: true,
    default: 20,
  },
  offset: {
    type: "number" as const,
    integer: true,
    convert: true,
    min: 0,
    optional: true,
    default: 0,
  },
};

type CustomErrors = Array<{ type: string; actual: unknown; message: string }>;

/**
 * A `custom` check for an object or array rule: the value as JSON is at most `maxBytes`
 * bytes of UTF-8, whatever its parts' own limits add up to (what one write may carry).
 */
export function maxJsonBytes(maxBytes: number) {
  return (value: unknown, errors: CustomErrors, _schema: unknown, field: string): unknown => {
    if (value === undefined || value === null) return value;
    const bytes = Buffer.byteLength(JSON.stringify(value));
    if (bytes > maxBytes) {
      errors.push({
        type: "jsonMax",
        actual: bytes,
        message: `The '${field}' field must be at most ${maxBytes} bytes as JSON (it is ${bytes}).`,
      });
    }
    return value;
  };
}

/** A token's or a collection's symbol. */
export const symbolParam = textRule({ min: 2, max: 11, pattern: /^[A-Z0-9]{2,11}$/ });

/** A token's or a collection's name. */
export const nameParam = textRule({ trim: true, min: 1, max: 64 });

/** A token's metadata (tokens.create, tokens.updateMetadata, the launch saga's token). */
export const tokenMetadataProps = {
  description: textRule({ max: 1000, optional: true }),
  imageUrl: urlRule({ optional: true }),
  website: urlRule({ optional: true }),
};

/** What one NFT's metadata may weigh as JSON: one mint writes it twice (the NFT, its event). */
/** One `{ trait_type, value }` of an NFT's attributes (or of an offer's traits). */
export const traitParam = {
  type: "object" as const,
  strict: "remove" as const,
  props: {
    trait_type: textRule({ trim: true, min: 1, max: 64 }),
    value: [textRule({ max: 256 }), { type: "number" as const, finite: true }],
  },
};

export const NFT_METADATA_MAX_BYTES = 16 * 1024;

/** An NFT's metadata (docs/api.md "NFTs and collections"). */
export const nftMetadataParam = {
  type: "object" as const,
  strict: "remove" as const,
  // The whole of it, as stored and sent in its event, whatever its parts add up to.
  custom: maxJsonBytes(NFT_METADATA_MAX_BYTES),
  props: {
    name: textRule({ trim: true, min: 1, max: 128 }),
    description: textRule({ max: 1000, optional: true }),
    image: urlRule({ optional: true }),
    attributes: {
      type: "array" as const,
      optional: true,
      max: 50,
      items: traitParam,
    },
  },
};
