import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import { NodeTransport } from "@sluice/node"
import { TestServer } from "@sluice/testing"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ApiClient, AuthProvider, ClientCredentials } from "../src/index.js"

describe("layerConfig constructors", () => {
  it.scoped("ApiClient.layerConfig and ClientCredentials.layerConfig read Config; httpClient stays usable", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        oauth: { clientId: "app", clientSecret: "s3cret" },
        routes: [{ path: "/v1/api", requireAuth: true, then: { echo: true } }]
      })
      const provider = ConfigProvider.fromMap(new Map([
        ["API_URL", `${server.url}/v1/`],
        ["API_KEY", "k-123"],
        ["TOKEN_URL", `${server.url}/oauth/token`],
        ["CLIENT_ID", "app"],
        ["CLIENT_SECRET", "s3cret"]
      ]))
      const live = ApiClient.layerConfig({
        baseUrl: Config.string("API_URL"),
        apiKey: Config.redacted("API_KEY"),
        apiKeyHeader: Config.succeed("X-Key")
      }).pipe(
        Layer.provide(ClientCredentials.layerConfig({
          tokenUrl: Config.string("TOKEN_URL"),
          clientId: Config.string("CLIENT_ID"),
          clientSecret: Config.redacted("CLIENT_SECRET")
        })),
        Layer.provideMerge(NodeTransport.layer())
      )
      const ctx = yield* Layer.build(live).pipe(Effect.withConfigProvider(provider))
      const api = Context.get(ctx, ApiClient.ApiClient)
      const echo = (yield* api.get("/api")) as { headers: Record<string, string> }
      expect(echo.headers["authorization"]).toBe("Bearer ***")
      expect(echo.headers["x-key"]).toBe("k-123")
      // the configured HttpClient underneath is reachable and works with all of @effect/platform
      const response = yield* api.httpClient.execute(HttpClientRequest.get(`${server.url}/__sluice/stats`))
      expect(((yield* response.json) as { tokenRequests: number }).tokenRequests).toBe(1)
      expect(Context.getOption(ctx, AuthProvider.AuthProvider)._tag).toBe("None")
    }))

  it.effect("a missing setting is a ConfigError naming it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(ApiClient.layerConfig({ baseUrl: Config.string("API_URL") }).pipe(Layer.provide(NodeTransport.layer()))).pipe(
          Effect.scoped,
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
        )
      )
      expect(String(error)).toContain("API_URL")
    }))
})
