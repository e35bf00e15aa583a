#include "models/formats/safetensors.h"

#include "common/json_limits.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <utility>

#include <nlohmann/json.hpp>

namespace ember {
namespace {

using Json = nlohmann::json;

struct DtypeInfo {
  StDtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {StDtype::kBool, "BOOL", 1},     {StDtype::kU8, "U8", 1},     {StDtype::kI8, "I8", 1},
    {StDtype::kF8E5M2, "F8_E5M2", 1}, {StDtype::kF8E4M3, "F8_E4M3", 1}, {StDtype::kI16, "I16", 2},
    {StDtype::kU16, "U16", 2},       {StDtype::kF16, "F16", 2},   {StDtype::kBF16, "BF16", 2},
    {StDtype::kI32, "I32", 4},       {StDtype::kU32, "U32", 4},   {StDtype::kF32, "F32", 4},
    {StDtype::kF64, "F64", 8},       {StDtype::kI64, "I64", 8},   {StDtype::kU64, "U64", 8},
};

const DtypeInfo* find_dtype(std::string_view name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

// Tensor names come from the file: keep error messages bounded.
std::string shown(std::string_view s) {
  constexpr size_t kMax = 80;
  std::string out = "'";
  out += s.substr(0, kMax);
  if (s.size() > kMax) out += "...";
  return out + "'";
}

// Reads one header entry {"dtype", "shape", "data_offsets"} into `t`.
// `data_size` bounds the byte range; the message says what is wrong.
Status parse_tensor_entry(const std::string& name, const Json& entry, uint64_t data_size,
                          StTensor* t) {
  const std::string where = "tensor " + shown(name);
  if (!entry.is_object()) return Error{where + ": entry is not an object"};
  for (const auto& [key, value] : entry.items()) {
    (void)value;
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      return Error{where + ": unknown field " + shown(key)};
  }
  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string())
    return Error{where + ": missing or non-string 'dtype'"};
  const DtypeInfo* info = find_dtype(dtype_it->get_ref<const std::string&>());
  if (info == nullptr)
    return Error{where + ": unknown dtype " + shown(dtype_it->get_ref<const std::string&>())};

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array())
    return Error{where + ": missing or non-array 'shape'"};
  // Element count, overflow-checked: it must fit int64 and, times the dtype
  // size, uint64 — the comparison with the byte range below then cannot wrap.
  uint64_t elems = 1;
  for (const Json& dim : *shape_it) {
    if (!dim.is_number_unsigned())
      return Error{where + ": shape entries must be non-negative integers"};
    const uint64_t d = dim.get<uint64_t>();
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(elems, d, &elems) ||
        elems > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return Error{where + ": shape element count overflows"};
    t->shape.push_back(static_cast<int64_t>(d));
  }
  uint64_t expected_bytes = 0;
  if (__builtin_mul_overflow(elems, static_cast<uint64_t>(info->size), &expected_bytes))
    return Error{where + ": shape byte size overflows"};

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2 ||
      !(*off_it)[0].is_number_unsigned() || !(*off_it)[1].is_number_unsigned())
    return Error{where + ": 'data_offsets' must be two non-negative integers"};
  const uint64_t begin = (*off_it)[0].get<uint64_t>();
  const uint64_t end = (*off_it)[1].get<uint64_t>();
  if (begin > end || end > data_size)
    return Error{where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] outside the data section of " + std::to_string(data_size) + " bytes"};
  if (end - begin != expected_bytes)
    return Error{where + ": " + std::to_string(end - begin) + " bytes but dtype " + info->name +
                 " and shape need " + std::to_string(expected_bytes)};
  t->name = name;
  t->dtype = info->dtype;
  t->begin = begin;
  t->end = end;
  return Status::success();
}

Status parse_metadata(const Json& meta, std::map<std::string, std::string>* out) {
  if (!meta.is_object()) return Error{"'__metadata__' is not an object"};
  for (const auto& [key, value] : meta.items()) {
    if (!value.is_string())
      return Error{"'__metadata__' value of " + shown(key) + " is not a string"};
    (*out)[key] = value.get<std::string>();
  }
  return Status::success();
}

Status parse_header(const uint8_t* data, size_t size, std::map<std::string, std::string>* metadata,
                    std::vector<StTensor>* tensors) {
  if (size < 8) return Error{"file of " + std::to_string(size) + " bytes has no 8-byte header length"};
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > SafetensorsFile::kMaxHeaderBytes)
    return Error{"header length " + std::to_string(header_len) + " at offset 0 exceeds the " +
                 std::to_string(SafetensorsFile::kMaxHeaderBytes) + "-byte limit"};
  if (header_len > size - 8)
    return Error{"header length " + std::to_string(header_len) + " at offset 0 exceeds the " +
                 std::to_string(size - 8) + " bytes after it"};
  const char* text = reinterpret_cast<const char*>(data + 8);
  // Header -> tensor entry -> shape/data_offsets: depth 3; a container cap
  // bounds the tree nlohmann builds before the entries are checked.
  if (Status s = check_json_shape(std::string_view(text, header_len), 3, size_t{1} << 21, "JSON header (offsets from byte 8)"); !s) {
    return s.error();
  }
  // Non-throwing parse: a malformed header yields a discarded value.
  Json header = Json::parse(text, text + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return Error{"header at offset 8 is not valid JSON"};
  if (!header.is_object()) return Error{"header at offset 8 is not a JSON object"};

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      Status s = parse_metadata(value, metadata);
      if (!s) return s;
      continue;
    }
    StTensor t;
    Status s = parse_tensor_entry(key, value, data_size, &t);
    if (!s) return s;
    t.data = data + data_start + t.begin;
    tensors->push_back(std::move(t));
  }

  // Byte ranges must not overlap: sorted by start, each must end before the
  // next begins (empty tensors may share an offset).
  std::vector<const StTensor*> by_offset;
  by_offset.reserve(tensors->size());
  for (const auto& t : *tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const StTensor* a, const StTensor* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      return Error{"tensors " + shown(by_offset[i - 1]->name) + " and " +
                   shown(by_offset[i]->name) + " overlap"};
  }
  // items() of a json object iterates in key order, so `tensors` is sorted by name.
  return Status::success();
}

}  // namespace

const char* st_dtype_name(StDtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d.name;
  return "?";
}

size_t st_dtype_size(StDtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d.size;
  return 0;
}

bool st_dtype_supported(StDtype dtype) {
  return dtype == StDtype::kF32 || dtype == StDtype::kF16 || dtype == StDtype::kBF16;
}

int64_t StTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Result<SafetensorsFile> SafetensorsFile::parse(const uint8_t* data, size_t size,
                                               const std::string& name) {
  SafetensorsFile file;
  file.name_ = name;
  try {
    Status s = parse_header(data, size, &file.metadata_, &file.tensors_);
    if (!s) return Error{name + ": " + s.error().message};
  } catch (const std::exception& e) {
    // Checked accesses above should make this unreachable; never let a
    // library exception escape the loader.
    return Error{name + ": malformed header: " + e.what()};
  }
  return file;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped) return mapped.error();
  auto file = parse(mapped->data(), mapped->size(), path);
  if (!file) return file.error();
  // The mapping's address does not change when the MappedFile moves, so the
  // tensor views stay valid.
  file->file_ = std::move(*mapped);
  return file;
}

const StTensor* SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const StTensor& t, std::string_view n) { return t.name < n; });
  if (it == tensors_.end() || it->name != name) return nullptr;
  return &*it;
}

float st_f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: normalize into a float32 normal.
    int e = -1;
    do {
      mant <<= 1;
      ++e;
    } while ((mant & 0x400) == 0);
    bits = sign | static_cast<uint32_t>(112 - e) << 23 | ((mant & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float st_bf16_to_f32(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;  // bf16 is the top half of a float32
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

Status st_to_f32(const StTensor& tensor, float* dst, const std::string& source) {
  const int64_t n = tensor.num_elements();
  const uint8_t* src = tensor.data;
  // Loads go through memcpy: safetensors data is not guaranteed aligned.
  switch (tensor.dtype) {
    case StDtype::kF32:
      if (n > 0) std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return Status::success();
    case StDtype::kF16:
    case StDtype::kBF16: {
      const bool bf = tensor.dtype == StDtype::kBF16;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf ? st_bf16_to_f32(h) : st_f16_to_f32(h);
      }
      return Status::success();
    }
    default:
      return Error{source + ": tensor " + shown(tensor.name) + " has dtype " +
                   st_dtype_name(tensor.dtype) + ", which ember does not support (F32, F16, BF16)"};
  }
}

Result<std::vector<float>> st_to_f32(const StTensor& tensor, const std::string& source) {
  if (!st_dtype_supported(tensor.dtype)) {
    Status s = st_to_f32(tensor, nullptr, source);
    return s.error();
  }
  std::vector<float> out(static_cast<size_t>(tensor.num_elements()));
  Status s = st_to_f32(tensor, out.data(), source);
  if (!s) return s.error();
  return out;
}

}  // namespace ember
