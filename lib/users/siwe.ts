import { getAddress, verifyMessage } from "ethers";
import { SiweMessage, generateNonce } from "siwe";

/**
 * Sign-In with Ethereum (EIP-4361) for wallet linking: build the message a wallet signs,
 * parse what comes back, compare it with the challenge we issued, verify the signature.
 * No broker here; the users service keeps the challenges.
 */

export const ADDRESS_PATTERN = /^0x[0-9a-fA-F]{40}$/;

export const LINK_STATEMENT = "Link this wallet to your mintmesh account";

/**
 * The statement a wallet shows: it names the account the wallet is being linked to, so a
 * user asked to sign for someone else's account can see it.
 */
export const linkStatement = (userId?: string): string =>
  userId ? `${LINK_STATEMENT} ${userId}` : LINK_STATEMENT;

/** The one spelling we store and compare: lower-case hex. */
export const normalizeAddress = (address: string): string => address.toLowerCase();

export interface ChallengeInput {
  /** The account the wallet is to be linked to, named in the statement. */
  userId?: string;
  domain: string;
  uri: string;
  address: string;
  chainId: number;
  nonce?: string;
  issuedAt: Date;
  expiresAt: Date;
}

export interface BuiltChallenge {
  message: string;
  nonce: string;
}

/** The message to sign. siwe's parser insists on the EIP-55 spelling, whatever case the client sent. */
export function buildChallenge(input: ChallengeInput): BuiltChallenge {
  const nonce = input.nonce ?? generateNonce();
  const msg = new SiweMessage({
    domain: input.domain,
    address: getAddress(normalizeAddress(input.address)),
    statement: linkStatement(input.userId),
    uri: input.uri,
    version: "1",
    chainId: input.chainId,
    nonce,
    issuedAt: input.issuedAt.toISOString(),
    expirationTime: input.expiresAt.toISOString(),
  });
  return { message: msg.prepareMessage(), nonce };
}

/** A signed message as text → its fields, or null when it is not EIP-4361. */
export function parseMessage(text: string): SiweMessage | null {
  try {
    return new SiweMessage(text);
  } catch {
    return null;
  }
}

/** What the server stored when it issued the challenge. */
export interface ExpectedChallenge {
  /** The account it was issued for: its statement must name it. */
  userId?: string;
  nonce: string;
  address: string;
  chainId: number;
  domain: string;
  uri: string;
}

/**
 * Why `msg` is not the message we issued (null when it is). The signature proves only
 * that the wallet signed this text, so every field that binds it to us must be ours.
 */
export function mismatch(msg: SiweMessage, expected: ExpectedChallenge): string | null {
  if (msg.nonce !== expected.nonce) return "nonce";
  if (normalizeAddress(msg.address) !== normalizeAddress(expected.address)) return "address";
  if (msg.chainId !== expected.chainId) return "chainId";
  if (msg.domain !== expected.domain) return "domain";
  if (msg.uri !== expected.uri) return "uri";
  if (msg.version !== "1") return "version";
  if (msg.statement !== linkStatement(expected.userId)) return "statement";
  return null;
}

/**
 * True when `signature` is the message's address signing exactly this message, and the
 * message's own time window holds at `now`. Externally owned accounts only: without a
 * provider siwe does no EIP-1271 (contract wallet) check.
 */
export async function verifySignature(
  msg: SiweMessage,
  signature: string,
  expect: { domain: string; nonce: string; now: Date },
): Promise<boolean> {
  // siwe prints ethers' exception for a signature no address can be recovered from (bad
  // length, non-canonical s, …) to the console: refuse those quietly first.
  try {
    verifyMessage(msg.prepareMessage(), signature);
  } catch {
    return false;
  }
  try {
    const res = await msg.verify(
      { signature, domain: expect.domain, nonce: expect.nonce, time: expect.now.toISOString() },
      { suppressExceptions: true },
    );
    return res.success;
  } catch {
    return false;
  }
}
