import type { ApiKeyScope } from "./api-keys";

/** The params of the users service's actions (services/users.service.ts), as validated there. */

export interface RegisterParams {
  email: string;
  password: string;
  displayName: string;
}
export interface LoginParams {
  email: string;
  password: string;
}
export interface UpdateMeParams {
  displayName?: string;
  bio?: string;
  avatarUrl?: string | null;
}
export interface WalletChallengeParams {
  address: string;
  chainId: number;
}
export interface LinkWalletParams {
  message: string;
  signature: string;
}
export interface UnlinkWalletParams {
  address: string;
}
export interface GetParams {
  id: string;
}
export interface CreateKeyParams {
  name: string;
  scopes: ApiKeyScope[];
}
export interface ListKeysParams {
  limit: number;
  offset: number;
}
export interface ResolveKeyParams {
  /** hashApiKey of the presented key: the key itself never leaves the gateway. */
  keyHash: string;
}
export interface ResolveAccountParams {
  /** A user id, or the 0x address of a linked wallet. */
  account: string;
}
