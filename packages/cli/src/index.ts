/**
 * @since 0.1.0
 */
export * as Batch from "./Batch.js"
export * as Chart from "./Chart.js"
export * as Demo from "./Demo.js"
export * as Input from "./Input.js"
export * as Spec from "./Spec.js"
export * as Stack from "./Stack.js"
