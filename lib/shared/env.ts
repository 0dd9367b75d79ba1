/** Typed readers for the env table of docs/architecture.md: every setting is env (12-factor). */

export function envStr(name: string): string | undefined;
export function envStr(name: string, fallback: string): string;
export function envStr(name: string, fallback?: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? fallback : v;
}

export function envInt(name: string, fallback: number): number {
  const v = envStr(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`Env ${name} must be a number, got "${v}"`);
  return n;
}

export function envBool(name: string, fallback: boolean): boolean {
  const v = envStr(name);
  if (v === undefined) return fallback;
  return ["1", "true", "yes", "on"].includes(v.toLowerCase());
}

export function envList(name: string): string[] {
  return (envStr(name) ?? "")
    .split(",")
    .map(s => s.trim())
    .filter(Boolean);
}
