/**
 * @since 0.3.0
 */
export * as Otel from "./Otel.js"
