export * from "./key";
export * from "./limiter";
export * from "./event";
