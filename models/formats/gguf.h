#pragma once
// GGUF (v2 and v3) model files: header, typed metadata, tensor infos, data.
// The file is memory mapped; tensors point into the mapping. Every count,
// length and offset is checked against the file size before it is used, so a
// truncated or hostile file yields an Error naming the file and the offset.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/mapped_file.h"
#include "common/status.h"

namespace ember {

// ggml tensor types (values as stored in the file).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ6_K = 14,
  kBF16 = 30,
};
const char* ggml_type_name(GgmlType type);
// Elements per quantization block and bytes per block; false for a type ember does not support.
bool ggml_type_layout(GgmlType type, int64_t* block_elems, int64_t* block_bytes);

enum class GgufValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5,
  kFloat32 = 6, kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};

// One metadata value. Scalars are widened (integers to int64/uint64, floats to
// double) but keep their original type tag; arrays are homogeneous.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  GgufValueType array_type = GgufValueType::kUint8;  // element type when type == kArray
  std::variant<int64_t, uint64_t, double, bool, std::string> scalar;
  // Array payload, by element kind (only the matching one is filled).
  std::vector<int64_t> ints;    // all signed/unsigned integer widths (uint64 above INT64_MAX rejected)
  std::vector<double> floats;   // float32/float64
  std::vector<std::string> strings;
  std::vector<uint8_t> bools;
  // Nested arrays (array of arrays) are parsed and validated, kept here.
  std::vector<GgufValue> arrays;
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the contiguous (fastest) dimension
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;   // from the start of the file
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping
  int64_t num_elements() const;
};

class GgufFile {
 public:
  static Result<GgufFile> open(const std::string& path);
  // Parses a buffer already in memory (the fuzzers use this); `name` is used in errors.
  // The buffer must outlive the returned object.
  static Result<GgufFile> parse(const uint8_t* data, size_t size, const std::string& name);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::string& name() const { return name_; }

  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  // Typed lookups: nullopt when absent or of another kind.
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;  // also accepts integers
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const;

 private:
  MappedFile file_;  // empty when parsed from a caller's buffer
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
};

// Dequantizes `num_elements` values of `type` from `src` (which holds exactly
// num_elements / block_elems blocks) into float32 `dst`.
// Fails for unsupported types or a count that is not a whole number of blocks.
Status dequantize(GgmlType type, const uint8_t* src, int64_t num_elements, float* dst);

}  // namespace ember
