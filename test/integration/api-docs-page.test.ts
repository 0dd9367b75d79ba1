import type { Browser } from "playwright-core";
import { launchChromium } from "../helpers/browser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOGIN_ROUTES, PRIVATE_ROUTES, PUBLIC_ROUTES } from "../../lib/gateway/api-routes";
import { parseAlias } from "../../lib/gateway/openapi/document";
import { ALL_SERVICES, usePlatform } from "../helpers/platform";

/**
 * /api/docs in a real headless Chromium: Swagger UI from the gateway itself shows every
 * route of the API, and the page asks nothing of any other host (it works offline).
 */

const ALL = ALL_SERVICES;

describe("the docs page /api/docs", () => {
  const p = usePlatform(ALL);
  let browser: Browser;

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(() => browser?.close());

  it(
    "shows every route with its method, loading nothing from another host",
    { timeout: 60_000 },
    async () => {
      const page = await browser.newPage();
      const local: string[] = [];
      const elsewhere: string[] = [];
      const errors: string[] = [];
      page.on("pageerror", err => errors.push(err.message));
      // Every request the page makes passes here: the gateway's go through, any other is
      // refused and remembered (a CDN, an online validator, fonts …).
      await page.route("**/*", route => {
        const url = route.request().url();
        if (url.startsWith(`${p.baseUrl}/`)) {
          local.push(new URL(url).pathname);
          return route.continue();
        }
        elsewhere.push(url);
        return route.abort();
      });
      const res = await page.goto(`${p.baseUrl}/api/docs`);
      expect(res?.status()).toBe(200);
      await page.waitForSelector(".opblock", { timeout: 15_000 });

      const shown = await page.$$eval(".opblock", blocks =>
        blocks.map(b => {
          const method = b.querySelector(".opblock-summary-method")?.textContent ?? "";
          const path = b.querySelector(".opblock-summary-path")?.getAttribute("data-path") ?? "";
          return `${method.toLowerCase()} ${path}`;
        }),
      );
      const expected = ["get /health/live", "get /health/ready", "get /api/openapi.json"];
      for (const table of [LOGIN_ROUTES, PRIVATE_ROUTES, PUBLIC_ROUTES]) {
        for (const key of Object.keys(table)) {
          const { method, path } = parseAlias(key);
          expected.push(`${method} /api/${path}`);
        }
      }
      expect(shown).toEqual(expect.arrayContaining(expected));
      expect(await page.title()).toBe("mintmesh API");
      expect(await page.textContent(".info .title")).toContain("mintmesh REST API");

      expect(local).toEqual(
        expect.arrayContaining([
          "/api/docs",
          "/api/docs/swagger-ui-bundle.js",
          "/api/docs/init.js",
          "/api/openapi.json",
        ]),
      );
      expect(elsewhere).toEqual([]);
      expect(errors).toEqual([]);
      await page.close();
    },
  );

  it("answers 404 for a file that is not the page's", async () => {
    const res = await p.client.get("/api/docs/package.json");
    expect(res.status).toBe(404);
    expect((res.body.error as { type: string }).type).toBe("NOT_FOUND");
  });
});
