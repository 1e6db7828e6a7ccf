// Argument and error helpers shared by the addon's sources: every wrong argument is a
// TypeError with code ERR_INVALID_ARG_VALUE, every errno an Error whose code is its name.
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
