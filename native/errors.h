// Errors and arguments, shared by the addon's sources: every wrong argument is a
// TypeError with code ERR_INVALID_ARG_VALUE, every failed system call an Error whose code
// is the errno name.
//
// One errno sign: inside the addon an errno is positive, as errno(3) holds it, and so is
// every number handed to JS as a value (acceptedInfo's field, describeErrno's argument).
// Only the `errno` property of a thrown Error is negative, because Node's own errors carry
// it so (util.getSystemErrorName(err.errno)); ErrnoError is the one place that negates.
// libuv returns negative codes: FromUv turns them positive where they are received.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

// Older libc headers lack these socket options; the kernel has had them since 2.6.28/2.6.37.
#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif

namespace traffic {

inline std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? std::string(name) : "E" + std::to_string(err);
}

// libuv's negative error code as a positive errno.
inline int FromUv(int uvCode) { return -uvCode; }

// "<syscall> failed: ENAME (text)[: advice]": how every failed call is worded.
inline std::string ErrnoMessage(int err, const std::string& syscall, const std::string& advice = "") {
  std::string message = syscall + " failed: " + ErrnoName(err) + " (" + std::strerror(err) + ")";
  return advice.empty() ? message : message + ": " + advice;
}

// An Error for a failed system call: the message above, code the errno name, errno
// negative as in Node's errors, syscall the call.
inline Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall, const std::string& advice = "") {
  Napi::Error error = Napi::Error::New(env, ErrnoMessage(err, syscall, advice));
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

inline Napi::Error ArgError(Napi::Env env, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
  return error;
}

// Reads an integer argument in [min, max]; false after throwing when it is not one
// (fractions, NaN and numeric strings included: 1.5 must never become fd 1).
inline bool IntArg(const Napi::Value& value, const std::string& name, int64_t min, int64_t max, int64_t* out) {
  Napi::Env env = value.Env();
  if (!value.IsNumber()) {
    ArgError(env, name + " must be a number").ThrowAsJavaScriptException();
    return false;
  }
  double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < static_cast<double>(min) || d > static_cast<double>(max)) {
    ArgError(env, name + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max))
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

}  // namespace traffic
