// Flat config: typescript-eslint's type-aware recommended rules, formatting left to prettier.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import prettier from "eslint-config-prettier";

export default tseslint.config(
  // client/schema.d.ts is generated (npm run gen:client).
  { ignores: ["node_modules/", "dist/", "data/", "coverage/", ".tools/", "client/schema.d.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", ignoreRestSiblings: true },
      ],
    },
  },
  { files: ["**/*.mjs", "**/*.js"], ...tseslint.configs.disableTypeChecked },
  ...importRules(),
);

/**
 * The import rules of docs/architecture.md ("The tree"), one block per folder: shared/
 * imports nothing else of lib/; events/ only shared/; a context folder never imports the
 * gateway, observability, a store implementation or moleculer, and sees other contexts only
 * through events/ (saga definitions may import their types); lib/ never imports mixins/,
 * middlewares/ or services/; a service never imports another service.
 */
function importRules() {
  const contexts = [
    "tokens",
    "nfts",
    "market",
    "dex",
    "marketing",
    "users",
    "sagas",
    "activity",
    "webhooks",
  ];
  const outsideLib = {
    group: ["**/mixins/*", "**/middlewares/*", "**/services/*"],
    message: "lib/ is code with no broker: it never imports mixins/, middlewares/ or services/.",
  };
  const rule = (patterns, paths = []) => ({
    "@typescript-eslint/no-restricted-imports": ["error", { paths, patterns }],
  });
  const moleculer = {
    name: "moleculer",
    message: "A context folder is domain code: no broker (take errors from lib/shared/errors).",
  };
  const blocks = [
    { files: ["lib/**/*.ts"], rules: rule([outsideLib]) },
    {
      files: ["lib/shared/**/*.ts"],
      rules: rule([
        outsideLib,
        { group: ["../*"], message: "shared/ imports nothing else of lib/." },
      ]),
    },
    {
      files: ["lib/events/**/*.ts"],
      rules: rule([
        outsideLib,
        { group: ["../*", "!../shared"], message: "events/ imports only shared/." },
      ]),
    },
    {
      files: ["services/**/*.ts"],
      rules: rule([
        { group: ["./*", "../services/*"], message: "A service never imports another service." },
      ]),
    },
  ];
  for (const c of contexts) {
    const others = contexts.filter(o => o !== c).map(o => `../${o}`);
    blocks.push({
      files: [`lib/${c}/**/*.ts`],
      rules: rule(
        [
          outsideLib,
          {
            group: ["../gateway", "../observability", "../store/*/*"],
            message:
              "A context never imports the gateway, observability or a store implementation.",
          },
          {
            group: others,
            message: "A context sees other contexts only through lib/events/.",
            // Saga definitions orchestrate other contexts: they may import their types.
            allowTypeImports: c === "sagas",
          },
        ],
        [moleculer],
      ),
    });
  }
  return blocks;
}
