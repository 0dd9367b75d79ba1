/**
 * Launch sagas as the unit and the HTTP tests both expect them (for `toMatchObject`):
 * the same three steps whichever way the saga is called.
 */

/** All three steps done. */
export const LAUNCH_COMPLETED = {
  type: "launch",
  state: "completed",
  steps: [
    { name: "createToken", state: "done" },
    { name: "addLiquidity", state: "done" },
    { name: "activateMarketing", state: "done" },
  ],
};

/** The liquidity was more than the supply: the token undone, marketing never started. */
export const LAUNCH_UNDONE_AT_LIQUIDITY = {
  state: "compensated",
  steps: [
    { name: "createToken", state: "compensated" },
    { name: "addLiquidity", state: "failed", error: { type: "INSUFFICIENT_FUNDS" } },
    { name: "activateMarketing", state: "pending" },
  ],
  error: { step: "addLiquidity", type: "INSUFFICIENT_FUNDS" },
};
