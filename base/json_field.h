// One field of a JSON object that a file or a peer gave, read strictly: present, of the type
// asked, and a whole number within the type's range where one is asked. nlohmann's own get<int>()
// converts 1e30 (undefined behaviour), -1 into an unsigned type (it wraps) and 2.5 (truncated);
// none of those is a value fcvm wrote, so each is refused with an fcvm::Error naming the field.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "base/error.h"

namespace fcvm {

template <typename T>
T jsonValue(const nlohmann::json& value, std::string_view key) {
  if constexpr (std::is_same_v<T, bool>) {
    if (value.is_boolean()) return value.get<bool>();
    throw Error(fmt::format("'{}' is not true or false", key));
  } else if constexpr (std::is_integral_v<T>) {
    if (value.is_number_unsigned() && std::in_range<T>(value.get<uint64_t>())) {
      return static_cast<T>(value.get<uint64_t>());
    }
    if (value.is_number_integer() && !value.is_number_unsigned() &&
        std::in_range<T>(value.get<int64_t>())) {
      return static_cast<T>(value.get<int64_t>());
    }
    throw Error(fmt::format("'{}' is not a whole number in range", key));
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (value.is_string()) return value.get<std::string>();
    throw Error(fmt::format("'{}' is not a string", key));
  } else {
    static_assert(std::is_same_v<T, nlohmann::json>, "bool, an integer, std::string or json");
    return value;
  }
}

// The field `key` of `object`; throws fcvm::Error if it is missing or not a T.
template <typename T>
T jsonField(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) throw Error(fmt::format("not an object where '{}' should be", key));
  auto it = object.find(key);
  if (it == object.end()) throw Error(fmt::format("'{}' is missing", key));
  return jsonValue<T>(*it, key);
}

// The same for a field that may be absent.
template <typename T>
std::optional<T> optionalJsonField(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) throw Error(fmt::format("not an object where '{}' should be", key));
  auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  return jsonValue<T>(*it, key);
}

}  // namespace fcvm
