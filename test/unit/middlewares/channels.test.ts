import { describe, expect, it } from "vitest";
import { natsConnection } from "../../../middlewares/channels";

describe("natsConnection", () => {
  it("moves credentials out of the URL, where the nats client would ignore them", () => {
    expect(natsConnection("nats://mintmesh:s%40cret@nats:4222")).toEqual({
      url: "nats://nats:4222",
      user: "mintmesh",
      pass: "s@cret",
    });
  });

  it("leaves a URL without credentials as it is", () => {
    expect(natsConnection("nats://127.0.0.1:4222")).toEqual({ url: "nats://127.0.0.1:4222" });
  });
});
