import * as Encoding from "effect/Encoding"

/** What a scrubbed secret is replaced with. */
export const MASK = "***"

/** Shorter values are not scrubbed: masking every "a" would wreck the text and hide nothing. */
const MIN_SECRET_LENGTH = 4

/**
 * The forms a secret takes when a server or a command echoes it: as sent,
 * URL-encoded (a query or a form body), Base64 and Base64url (a Basic
 * header, a JWT segment), and JSON-escaped.
 */
export const formsOf = (secret: string): ReadonlyArray<string> => {
  if (secret.length < MIN_SECRET_LENGTH) return []
  const forms = new Set<string>([
    secret,
    encodeURIComponent(secret),
    encodeURIComponent(secret).replace(/%20/g, "+"),
    Encoding.encodeBase64(secret),
    Encoding.encodeBase64Url(secret),
    JSON.stringify(secret).slice(1, -1)
  ])
  return [...forms].filter((form) => form.length >= MIN_SECRET_LENGTH)
}

/**
 * The secrets inside one credential header value: the whole value, the part
 * after an auth scheme (`Bearer x` → `x`) and, for Basic, the decoded
 * `user:password` and the password alone.
 */
export const secretsOfHeaderValue = (value: string): ReadonlyArray<string> => {
  const out = [value]
  const space = value.indexOf(" ")
  if (space > 0 && /^[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*$/.test(value.slice(0, space))) {
    const rest = value.slice(space + 1).trim()
    out.push(rest)
    if (value.slice(0, space).toLowerCase() === "basic") {
      const decoded = Encoding.decodeBase64String(rest)
      if (decoded._tag === "Right") {
        out.push(decoded.right)
        const colon = decoded.right.indexOf(":")
        if (colon !== -1) out.push(decoded.right.slice(colon + 1))
      }
    }
  }
  return out
}

/**
 * The secrets a client holds, to be masked in every excerpt of what a server
 * or a command said before that excerpt reaches an error, a log, a span or an
 * output. Keeps the most recent `limit` secrets (a refreshed token replaces
 * the old one; the old one may still be echoed for a while).
 */
export class Scrubber {
  private forms: Array<string> = []
  private readonly secrets: Array<string> = []
  constructor(private readonly limit = 16) {}

  /** Adds a secret (and its echoed forms); a repeat is a no-op. */
  add(secret: string): void {
    if (secret.length < MIN_SECRET_LENGTH || this.secrets.includes(secret)) return
    this.secrets.push(secret)
    if (this.secrets.length > this.limit) this.secrets.shift()
    // Longest first, so a secret containing another is masked whole.
    this.forms = [...new Set(this.secrets.flatMap(formsOf))].sort((a, b) => b.length - a.length)
  }

  /** Adds every secret inside a credential's header values. */
  addHeaders(headers: Readonly<Record<string, string>>): void {
    for (const name in headers) for (const secret of secretsOfHeaderValue(headers[name]!)) this.add(secret)
  }

  /** `text` with every known secret, in every form, replaced by `***`. */
  scrub(text: string): string {
    let out = text
    for (const form of this.forms) if (out.includes(form)) out = out.split(form).join(MASK)
    return out
  }
}
