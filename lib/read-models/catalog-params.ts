import { pageParams } from "../shared/params";
import { CATALOG_SORTS } from "./read-model";

/**
 * The params of the catalog's reads, one definition for catalog v1 and its v2 canary
 * (services/catalog.v2.service.ts takes the same params as v1).
 */
export const CATALOG_LIST_PARAMS = {
  $$strict: "remove" as const,
  q: { type: "string" as const, trim: true, max: 64, optional: true },
  creator: { type: "string" as const, trim: true, min: 1, max: 128, optional: true },
  sort: {
    type: "enum" as const,
    values: [...CATALOG_SORTS],
    optional: true,
    default: "createdAt",
  },
  featured: { type: "boolean" as const, convert: true, optional: true },
  ...pageParams,
};

export const CATALOG_GET_PARAMS = {
  $$strict: "remove" as const,
  id: { type: "string" as const, min: 1, max: 64 },
};
