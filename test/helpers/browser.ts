import { chromium, type Browser } from "playwright-core";

/**
 * Debian's Chromium (apt package `chromium`), headless, never a downloaded browser; the
 * flags keep it from reaching out to the network at start (the CI machine has none).
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
  });
}
