import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, expect, it } from "@effect/vitest"
import { NodeTransport } from "@sluice/node"
import { TestServer } from "@sluice/testing"
import * as Util from "node:util"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { ApiClient, AuthEnvironment, AuthProvider, ClientCredentials, CommandAuth } from "../src/index.js"
import { recordingTracer, setup, setupWith } from "./helpers.js"

const TOKEN = "tok-0123456789abcdef"
const KEY = "key-0123456789abcdef"

/** A second origin that records whatever reaches it. */
const otherOrigin = TestServer.make({ routes: [{ path: "/*", then: { echo: true } }] })

describe("credentials go only to their origin", () => {
  it.scoped("an absolute URL of another origin as a path is refused before anything is sent", () =>
    Effect.gen(function*() {
      const other = yield* otherOrigin
      const { api, server } = yield* setupWith(
        { routes: [{ path: "/*", then: { echo: true } }] },
        { apiKey: Redacted.make(KEY) },
        () => AuthProvider.layerBearer(Redacted.make(TOKEN))
      )
      for (const path of [`${other.url}/steal`, `HTTP://${other.url.slice(7)}/steal`]) {
        const error = yield* Effect.flip(api.get(path))
        assert(error._tag === "RequestEncodeError")
        expect(error.description).toContain("allowAbsoluteUrls")
      }
      const stream = yield* Effect.flip(Stream.runDrain(api.postStream(`${other.url}/steal`)))
      expect(stream._tag).toBe("RequestEncodeError")
      expect((yield* other.stats).total).toBe(0)
      // an absolute URL of the base URL's own origin is fine, credentials included
      yield* api.get(`${server.url}/mine`)
      expect((yield* server.log)[0]!.headers["authorization"]).toBe("Bearer ***")
    }))

  it.scoped("allowAbsoluteUrls: the other origin gets the request without any credential", () =>
    Effect.gen(function*() {
      const other = yield* otherOrigin
      const { api, server } = yield* setupWith(
        { routes: [{ path: "/*", then: { echo: true } }] },
        {
          apiKey: Redacted.make(KEY),
          apiKeyHeader: "X-Custom-Key",
          headers: { authorization: `Bearer ${TOKEN}`, "x-tenant": "acme" },
          allowAbsoluteUrls: true
        },
        () => AuthProvider.layerApiKey(Redacted.make(KEY), "X-Provider-Key")
      )
      yield* api.post(`${other.url}/hook`, { body: { a: 1 } })
      const seen = (yield* other.log)[0]!
      expect(seen.path).toBe("/hook")
      expect(seen.headers["x-tenant"]).toBe("acme")
      for (const h of ["authorization", "x-custom-key", "x-provider-key", "x-api-key"]) {
        expect(seen.headers[h], h).toBeUndefined()
      }
      yield* api.get("/home")
      const home = (yield* server.log)[0]!.headers
      expect(home["x-custom-key"]).toBeDefined()
      expect(home["x-provider-key"]).toBeDefined()
    }))

  const redirectCases: ReadonlyArray<{
    readonly name: string
    readonly header: string
    readonly layer: Layer.Layer<AuthProvider.AuthProvider, unknown>
  }> = [
    { name: "layerApiKey (X-API-Key)", header: "x-api-key", layer: AuthProvider.layerApiKey(Redacted.make(KEY)) },
    { name: "layerApiKey (custom header)", header: "x-my-key", layer: AuthProvider.layerApiKey(Redacted.make(KEY), "X-My-Key") },
    {
      name: "CommandAuth with a custom header",
      header: "x-cmd-token",
      layer: CommandAuth.layer({ command: [process.execPath, "-e", `process.stdout.write(${JSON.stringify(TOKEN)})`], header: "X-Cmd-Token" })
        .pipe(Layer.provide(NodeContext.layer))
    },
    {
      name: "AuthEnvironment's SLUICE_API_KEY",
      header: "x-env-key",
      layer: AuthEnvironment.layer().pipe(
        Layer.provide(Layer.merge(NodeContext.layer, NodeTransport.layer())),
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([
          ["SLUICE_API_KEY", KEY],
          ["SLUICE_API_KEY_HEADER", "X-Env-Key"]
        ]))))
      ) as Layer.Layer<AuthProvider.AuthProvider, unknown>
    }
  ]
  for (const c of redirectCases) {
    it.scoped(`a cross-origin redirect drops the header ${c.name} sets; a same-origin one keeps it`, () =>
      Effect.gen(function*() {
        const other = yield* otherOrigin
        const { api, server } = yield* setupWith(
          {
            routes: [
              { path: "/away", then: { status: 302, redirect: `${other.url}/landing` } },
              { path: "/here", then: { status: 307, redirect: "/home" } },
              { path: "/home", then: { echo: true } }
            ],
            secretHeaders: [c.header]
          },
          { followRedirects: true },
          () => c.layer
        )
        yield* api.get("/away")
        const landed = (yield* other.log)[0]!
        expect(landed.path).toBe("/landing")
        expect(landed.headers[c.header]).toBeUndefined()
        yield* api.get("/here")
        const home = (yield* server.log).find((r) => r.path === "/home")!
        expect(home.headers[c.header]).toBe("***")
      }))
  }

  it.scoped("a path parameter of . or .. is refused; other dots are encoded as data", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setup({ routes: [{ path: "/*", then: { echo: true } }] })
      for (const id of ["..", "."]) {
        const error = yield* Effect.flip(api.get("/users/{id}/profile", { path: { id } }))
        assert(error._tag === "RequestEncodeError")
        expect(error.description).toContain(`"${id}"`)
      }
      expect((yield* server.stats).total).toBe(0)
      const echo = (yield* api.get("/users/{id}/profile", { path: { id: "..." } })) as { path: string }
      expect(echo.path).toBe("/users/.../profile")
      const encoded = (yield* api.get("/users/{id}/profile", { path: { id: "../admin" } })) as { path: string }
      expect(encoded.path).toBe("/users/..%2Fadmin/profile")
    }))

  it.effect("a base URL with user:password@ is refused at construction, the password in no message", () =>
    Effect.gen(function*() {
      const build = (baseUrl: string) =>
        Effect.flip(Effect.provideService(ApiClient.make({ baseUrl }), HttpClient.HttpClient, HttpClient.make(() => Effect.die("unused"))))
      const error = yield* build("https://alice:hunter2@api.example.com/v1")
      expect(error._tag).toBe("IllegalArgumentException")
      expect(error.message).toContain("AuthProvider.layerBasic")
      expect(error.message).toContain("https://api.example.com/v1")
      expect(error.message).not.toContain("hunter2")
      expect(error.message).not.toContain("alice")
      expect((yield* build("ftp://api.example.com")).message).toContain("http or https")
      expect((yield* build("not a url")).message).toContain("not a URL")
    }))
})

describe("secrets never appear, even when a server echoes them", () => {
  /** Every way an error gets shown. */
  const renderings = (error: unknown) => [
    String(error),
    (error as Error).message,
    JSON.stringify(error),
    Util.inspect(error, { depth: 10 }),
    Cause.pretty(Cause.fail(error))
  ]
  const expectClean = (texts: ReadonlyArray<string>, secrets: ReadonlyArray<string>) => {
    for (const text of texts) for (const secret of secrets) expect(text, `${secret} in ${text.slice(0, 300)}`).not.toContain(secret)
  }
  const PASSWORD = "pa55-w0rd-value"

  it.scoped("an error body that echoes the request's credentials is scrubbed: bearer, API key, Basic, in plain and encoded forms", () =>
    Effect.gen(function*() {
      const cases = [
        { layer: AuthProvider.layerBearer(Redacted.make(TOKEN)), secrets: [TOKEN] },
        { layer: AuthProvider.layerApiKey(Redacted.make(KEY), "X-Custom"), secrets: [KEY] },
        {
          layer: AuthProvider.layerBasic("ada", Redacted.make(PASSWORD)),
          secrets: [PASSWORD, Buffer.from(`ada:${PASSWORD}`).toString("base64")]
        }
      ]
      for (const c of cases) {
        const { api } = yield* setupWith(
          {
            routes: [
              { path: "/fail", then: { status: 500, echo: "unmasked" as const } },
              { path: "/bad", then: { status: 400, body: `token=${encodeURIComponent(c.secrets[0]!)} b64=${Buffer.from(c.secrets[0]!).toString("base64")}` } },
              { path: "/ok", then: { echo: "unmasked" as const } }
            ]
          },
          { apiKey: Redacted.make(`${KEY}-own`) },
          () => c.layer
        )
        const logged: Array<string> = []
        const logger = Logger.make(({ message, cause }) => logged.push(`${String(message)} ${Cause.pretty(cause)}`))
        const { spans, tracer } = yield* recordingTracer
        for (const path of ["/fail", "/bad"]) {
          const error = yield* Effect.flip(api.get(path)).pipe(Effect.withTracer(tracer))
          assert(error._tag === "HttpStatusError", error._tag)
          expect(error.body).toContain("***")
          yield* Effect.logError("request failed", error).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
          expectClean([...renderings(error), ...logged], [...c.secrets, `${KEY}-own`])
        }
        // a success whose body does not match the schema: the decode issue quotes the body
        const decode = yield* Effect.flip(api.get("/ok", { schema: Schema.Struct({ ok: Schema.Boolean }) }))
        assert(decode._tag === "ResponseDecodeError", decode._tag)
        expectClean([...renderings(decode), decode.issue, decode.body], [...c.secrets, `${KEY}-own`])
        const spanTexts = spans.map((s) => Util.inspect({ name: s.name, attributes: s.attributes, status: s.status }, { depth: 10 }))
        expectClean(spanTexts, [...c.secrets, `${KEY}-own`])
      }
    }))

  it.scoped("a token endpoint that echoes its request never puts the client secret into AuthenticationError", () =>
    Effect.gen(function*() {
      const secret = "cl1ent+s3cret/value=="
      for (const credentialsIn of ["basic", "body"] as const) {
        const { api } = yield* setupWith(
          { routes: [{ path: "/oauth/token", then: { status: 400, echo: "unmasked" as const } }] },
          {},
          (server) =>
            ClientCredentials.layer({
              tokenUrl: `${server.url}/oauth/token`,
              clientId: "app",
              clientSecret: Redacted.make(secret),
              credentialsIn
            })
        )
        const error = yield* Effect.flip(api.get("/x"))
        assert(error._tag === "AuthenticationError", error._tag)
        expect(error.message).toContain("***")
        expectClean(renderings(error), [secret, encodeURIComponent(secret), Buffer.from(`app:${encodeURIComponent(secret)}`).toString("base64")])
      }
    }))

  it.scoped("a query in the path template never goes into the span name", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({ routes: [{ path: "/*", then: { echo: true } }] })
      const { spans, tracer } = yield* recordingTracer
      yield* api.get(`/search?api_key=${KEY}`).pipe(Effect.withTracer(tracer))
      expectClean(spans.map((s) => `${s.name} ${Util.inspect(s.attributes)}`), [KEY])
    }))
})
