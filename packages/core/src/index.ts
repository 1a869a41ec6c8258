/**
 * @since 0.1.0
 */
export * as ApiClient from "./ApiClient.js"
export * as ApiError from "./ApiError.js"
export * as Redirects from "./Redirects.js"
export * as RetryAfter from "./RetryAfter.js"
export * as Sse from "./Sse.js"
export * as TransportDeadline from "./TransportDeadline.js"
export * as AuthEnvironment from "./AuthEnvironment.js"
export * as AuthProvider from "./AuthProvider.js"
export * as CircuitBreaker from "./CircuitBreaker.js"
export * as CircuitBreakerStore from "./CircuitBreakerStore.js"
export * as ClientCredentials from "./ClientCredentials.js"
export * as CommandAuth from "./CommandAuth.js"
export * as RateLimiter from "./RateLimiter.js"
export * as RateLimiterStore from "./RateLimiterStore.js"
export * as RateLimitHeaders from "./RateLimitHeaders.js"
export * as Retry from "./Retry.js"
