import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import readline from "node:readline";
import { runnerArgs } from "./runner-args";

/**
 * `npm run dev`: edit, save, try it in the REPL, in one terminal. What the Moleculer
 * TypeScript template's `moleculer-runner --hot --repl` on ts-node does, on the compiled code:
 *
 *   - `tsc -w` compiles into dist/ whenever a .ts file changes. Type errors are printed
 *     here with a `[tsc]` prefix; the JavaScript is written anyway, as plain `tsc` does.
 *   - Once the first compile is done, moleculer-runner (with the node flags of `npm run
 *     serve`) hosts every service of dist/services in one broker, with `--hot`: a service
 *     reloads when its compiled file or a file it imports changes, a new *.service.js is
 *     loaded, and a change to moleculer.config or a middleware restarts the broker.
 *   - `--repl` opens the REPL on that broker with the project's commands (bin/repl.ts is
 *     the runner's config): health, register, login, mktoken, balances, next to
 *     Moleculer's call, services, actions, nodes, ….
 *
 * The env is that of `npm start` (one process, NeDB files under ./data, memory cache,
 * in-memory channels) unless set otherwise, e.g. `LOG_LEVEL=warn npm run dev`.
 * Ctrl+D or `quit` in the REPL ends everything.
 */

const ROOT = path.resolve(__dirname, "../..");
const TSC = path.join(ROOT, "node_modules/typescript/bin/tsc");

const log = (line: string) => process.stdout.write(`[dev] ${line}\n`);

function startRunner(): ChildProcess {
  log(
    "services from dist/services, hot reload on; REPL below (`help` lists the commands, Ctrl+D ends)",
  );
  return spawn(
    process.execPath,
    [...runnerArgs(ROOT, [], "dist/bin/repl.js"), "--hot", "--repl"],
    // The terminal is the REPL's: stdin too.
    {
      cwd: ROOT,
      env: { ...process.env, SERVICEDIR: path.join(ROOT, "dist/services") },
      stdio: "inherit",
    },
  );
}

function main(): void {
  const tsc = spawn(
    process.execPath,
    [TSC, "-p", "tsconfig.build.json", "--watch", "--preserveWatchOutput", "--pretty", "false"],
    { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] },
  );
  let runner: ChildProcess | undefined;

  readline.createInterface({ input: tsc.stdout }).on("line", line => {
    // "10:42:07 AM - Found 0 errors. Watching for file changes."
    const found = /Found (\d+) errors?\. Watching for file changes/.exec(line);
    if (found) {
      if (found[1] !== "0") log(`tsc: ${found[1]} type error(s) above; the JavaScript is written`);
      if (!runner) {
        runner = startRunner();
        runner.on("exit", (code, signal) => {
          tsc.kill();
          process.exit(code ?? (signal === "SIGINT" || signal === "SIGTERM" ? 0 : 1));
        });
      }
      return;
    }
    // Compile errors are the news; "Starting compilation…" and blank lines are not.
    if (line.trim() && !/ - (Starting|File change detected)/.test(line)) {
      process.stdout.write(`[tsc] ${line}\n`);
    }
  });
  tsc.on("exit", code => {
    if (runner) log(`tsc exited (${code}): no more rebuilds until \`npm run dev\` is run again`);
    else process.exit(code ?? 1);
  });

  // Ctrl+C outside the REPL reaches every process of the terminal; a SIGTERM only this one.
  process.on("SIGINT", () => {
    if (!runner) process.exit(130);
  });
  process.on("SIGTERM", () => {
    if (runner) runner.kill("SIGTERM");
    else process.exit(143);
  });
  process.on("exit", () => {
    tsc.kill();
    if (runner && runner.exitCode === null && runner.signalCode === null) runner.kill("SIGTERM");
  });
}

main();
