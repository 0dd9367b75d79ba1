import dns from "node:dns";
import net from "node:net";

/**
 * Where webhooks may be sent (docs/api.md "Webhooks", SSRF): an https URL whose every
 * address is public. Loopback, private, link-local (the cloud metadata address
 * 169.254.169.254 among them), CGNAT, unique-local, multicast, unspecified, reserved and
 * documentation ranges are refused, in IPv4, IPv6, and IPv4 written inside IPv6
 * (::ffff:127.0.0.1, ::ffff:7f00:1, NAT64). The check runs when an endpoint is
 * registered (all the addresses the name resolves to) and again at every connection
 * (`guardedLookup`, the socket's own DNS lookup), so a name that resolves to a public
 * address at registration and to 127.0.0.1 later (DNS rebinding) is refused too.
 * `allowPrivate` (WEBHOOKS_ALLOW_PRIVATE=true: development and tests) lets any address
 * and plain http through.
 */

export interface UrlPolicy {
  allowPrivate: boolean;
}

export class UrlRefused extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "UrlRefused";
  }
}

const MAX_URL_LENGTH = 2048;

const blocked = new net.BlockList();
for (const [net4, bits] of [
  ["0.0.0.0", 8], // "this network", unspecified
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // CGNAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata
  ["172.16.0.0", 12],
  ["192.0.0.0", 24], // IETF protocol assignments
  ["192.0.2.0", 24], // documentation
  ["192.88.99.0", 24], // 6to4 relay
  ["192.168.0.0", 16],
  ["198.18.0.0", 15], // benchmarking
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
] as const)
  blocked.addSubnet(net4, bits, "ipv4");
for (const [net6, bits] of [
  ["::", 128], // unspecified
  ["::1", 128], // loopback
  ["::", 96], // IPv4-compatible (deprecated)
  ["::ffff:0:0:0", 96], // IPv4-translated (SIIT)
  ["64:ff9b::", 96], // NAT64: reaches IPv4 through a translator
  ["64:ff9b:1::", 48],
  ["100::", 64], // discard
  ["2001::", 23], // IETF protocol assignments (Teredo, ORCHID, …)
  ["2001:db8::", 32], // documentation
  ["2002::", 16], // 6to4: carries an IPv4 address
  ["fc00::", 7], // unique-local (fd00:ec2::254, a metadata address, too)
  ["fe80::", 10], // link-local
  ["fec0::", 10], // site-local (deprecated)
  ["ff00::", 8], // multicast
] as const)
  blocked.addSubnet(net6, bits, "ipv6");

/** The IPv4 address inside an IPv4-mapped IPv6 one (::ffff:a.b.c.d in any spelling), else null. */
function mappedIpv4(ip: string): string | null {
  // The URL parser writes an IPv6 address in its one canonical form: ::ffff:7f00:1.
  const canonical = new URL(`http://[${ip}]`).hostname.slice(1, -1);
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!hex) return null;
  const hi = parseInt(hex[1], 16);
  const lo = parseInt(hex[2], 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Whether a literal IP address is public (none of the ranges above). */
export function isPublicAddress(address: string): boolean {
  const ip = address.replace(/^\[|\]$/g, "").replace(/%.*$/, ""); // brackets, zone id
  if (net.isIPv4(ip)) return !blocked.check(ip, "ipv4");
  if (!net.isIPv6(ip)) return false;
  const v4 = mappedIpv4(ip);
  if (v4) return !blocked.check(v4, "ipv4");
  return !blocked.check(ip, "ipv6");
}

/** The URL parsed and checked for scheme and form (no DNS): what the endpoint keeps. */
export function parseWebhookUrl(raw: string, policy: UrlPolicy): URL {
  if (raw.length > MAX_URL_LENGTH)
    throw new UrlRefused(`must be at most ${MAX_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UrlRefused("must be an absolute URL");
  }
  const schemes = policy.allowPrivate ? ["https:", "http:"] : ["https:"];
  if (!schemes.includes(url.protocol))
    throw new UrlRefused(policy.allowPrivate ? "must be http or https" : "must be https");
  if (url.username || url.password) throw new UrlRefused("must not carry credentials");
  if (!url.hostname) throw new UrlRefused("must name a host");
  return url;
}

type LookupAll = (host: string) => Promise<dns.LookupAddress[]>;
const lookupAll: LookupAll = host => dns.promises.lookup(host, { all: true, verbatim: true });

/**
 * parseWebhookUrl, then every address its host resolves to must be public (unless
 * `allowPrivate`). Refusals are UrlRefused (a 400 naming `url`).
 */
export async function checkWebhookUrl(
  raw: string,
  policy: UrlPolicy,
  lookup: LookupAll = lookupAll,
): Promise<URL> {
  const url = parseWebhookUrl(raw, policy);
  if (policy.allowPrivate) return url;
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (net.isIP(host)) {
    if (!isPublicAddress(host)) throw new UrlRefused("must be a public address");
    return url;
  }
  let addresses: dns.LookupAddress[];
  try {
    addresses = await lookup(host);
  } catch {
    throw new UrlRefused("host does not resolve");
  }
  if (addresses.length === 0) throw new UrlRefused("host does not resolve");
  if (addresses.some(a => !isPublicAddress(a.address)))
    throw new UrlRefused("host resolves to a non-public address");
  return url;
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | dns.LookupAddress[],
  family?: number,
) => void;

/**
 * The `lookup` a delivery's socket uses (net.connect calls it at connect time): dns.lookup,
 * with every non-public address refused, so what the socket connects to is what was
 * checked. An IP literal in the URL is not looked up; parse-time checks cover it.
 */
export function guardedLookup(policy: UrlPolicy) {
  return (hostname: string, options: dns.LookupOptions, callback: LookupCallback): void => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const ok = policy.allowPrivate
        ? addresses
        : addresses.filter(a => isPublicAddress(a.address));
      if (ok.length === 0 || ok.length < addresses.length) {
        const refused = Object.assign(new Error(`${hostname} resolves to a non-public address`), {
          code: "EADDRNOTALLOWED",
        });
        return callback(refused, []);
      }
      if (options.all) return callback(null, ok);
      callback(null, ok[0].address, ok[0].family);
    });
  };
}
