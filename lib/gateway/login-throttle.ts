import { ClientError } from "../shared/errors";
import {
  MemoryAttemptCounter,
  RedisRateLimitStore,
  accountKey,
  type AttemptCounter,
} from "./rate-limit";

/**
 * The login throttle per account (docs/api.md "Rate limits"), on top of the per-address
 * limits. It counts an account's failures per client address: counted per account alone,
 * six wrong passwords from anyone shut the owner out, right password and all, from
 * everywhere. Now an address that keeps failing for an account is refused for it, and
 * the owner's own address is not. Against a guesser spread over many addresses, an
 * account-wide ceiling: past it, every address that has failed for the account is
 * refused too, so each further address gets one guess; one that has not failed (the
 * owner, with the right password) still gets in.
 */

export interface LoginThrottleOptions {
  /** Failures for one account from one address in a window, beyond which that address is refused (0: off). */
  maxFailures: number;
  /** Failures for one account from all addresses in a window, beyond which every address that has failed is refused (0: no ceiling). */
  accountMaxFailures: number;
  windowMs: number;
}

/** One login attempt being counted: what its outcome is reported with. */
export interface LoginAttempt {
  account: string;
  /** The account and the client address. */
  pair: string;
}

/** A 429 of the throttle: `retryAt` (epoch ms) is when the window ends, for Retry-After. */
export class LoginRefused extends ClientError {
  constructor(readonly retryAt: number) {
    super("Too many failed logins for this account", 429, "RATE_LIMITED");
  }
}

/** Told of a count that could not be written (Redis down): the login is answered anyway. */
type CountFailed = (err: unknown, what: string) => void;

export class LoginThrottle {
  constructor(
    private readonly opts: LoginThrottleOptions,
    /** Attempts per account and address since that address's last success. */
    private readonly pairs: AttemptCounter,
    /** Failures per account, from every address. */
    private readonly accounts: AttemptCounter,
    private readonly countFailed: CountFailed = () => undefined,
  ) {}

  /** Counters in memory, or in Redis under `<namespace>:rl:acct-…` shared by all gateways. */
  static create(
    opts: LoginThrottleOptions,
    redis: { redisUrl?: string; namespace: string },
    countFailed?: CountFailed,
  ): LoginThrottle {
    const { windowMs } = opts;
    const counter = (prefix: string): AttemptCounter =>
      redis.redisUrl
        ? new RedisRateLimitStore(windowMs, {
            redisUrl: redis.redisUrl,
            prefix: `${redis.namespace}:rl:${prefix}`,
          })
        : new MemoryAttemptCounter(windowMs);
    return new LoginThrottle(opts, counter("acct-addr"), counter("acct-fail"), countFailed);
  }

  get enabled(): boolean {
    return this.opts.maxFailures > 0;
  }

  /** The counters, for readiness and closing. */
  get counters(): AttemptCounter[] {
    return [this.pairs, this.accounts];
  }

  /**
   * Counts an attempt for `email` from `address` before it is tried (so parallel guesses
   * count too); throws LoginRefused when this address may not try this account now. The
   * same work for an unknown email as for a known one.
   */
  async begin(email: string, address: string): Promise<LoginAttempt> {
    const account = accountKey(email);
    const pair = `${account}:${address}`;
    const tries = await this.pairs.inc(pair);
    if (tries > this.opts.maxFailures) throw new LoginRefused(this.pairs.resetTime);
    // Past the ceiling only an address that has failed for the account is refused.
    const ceiling = this.opts.accountMaxFailures;
    if (tries > 1 && ceiling > 0 && (await this.accounts.peek(account)) >= ceiling) {
      throw new LoginRefused(this.accounts.resetTime);
    }
    return { account, pair };
  }

  /**
   * The password was wrong (or the email unknown): counts for the account's ceiling. The
   * count is sent at once, so that the client's next attempt, through the same connection
   * to Redis, comes after it.
   */
  failed(attempt: LoginAttempt): Promise<void> {
    return this.accounts.inc(attempt.account).then(
      () => undefined,
      (err: unknown) => this.countFailed(err, "Login failure not counted"),
    );
  }

  /** `login` tried for `attempt` (none: not throttled), its outcome counted. */
  async settle<T>(attempt: LoginAttempt | undefined, login: () => Promise<T>): Promise<T> {
    if (!attempt) return login();
    try {
      const out = await login();
      await this.succeeded(attempt);
      return out;
    } catch (err) {
      if ((err as { code?: unknown }).code === 401) await this.failed(attempt);
      throw err;
    }
  }

  /** A success forgets this address's failures for the account (not the account's total). */
  succeeded(attempt: LoginAttempt): Promise<void> {
    return this.pairs
      .reset(attempt.pair)
      .catch((err: unknown) => this.countFailed(err, "Login throttle not reset"));
  }
}
