#pragma once
// safetensors files (the Hugging Face weight format): an 8-byte little-endian
// header length, a JSON header naming every tensor's dtype, shape and byte
// range, then the raw data. The file is memory mapped and tensors are views
// into the mapping (no copy). Everything in the header is checked before use:
// the header length against the file, each byte range against the data
// section and against its dtype and shape, and ranges against each other (no
// overlap), so a hostile file yields an Error naming the file and the problem.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/mapped_file.h"
#include "common/status.h"

namespace ember {

// Every dtype the format defines. All are parsed (their sizes are known), but
// only F32, F16 and BF16 can be converted; the others are reported as
// unsupported when a caller asks for their values.
enum class StDtype {
  kBool, kU8, kI8, kF8E5M2, kF8E4M3, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kF64, kI64, kU64,
};
const char* st_dtype_name(StDtype dtype);
size_t st_dtype_size(StDtype dtype);
bool st_dtype_supported(StDtype dtype);  // convertible to float32

struct StTensor {
  std::string name;
  StDtype dtype = StDtype::kF32;
  std::vector<int64_t> shape;  // row-major: shape.back() is the contiguous dimension
  uint64_t begin = 0;          // byte range relative to the data section
  uint64_t end = 0;
  const uint8_t* data = nullptr;  // into the mapping (or the caller's buffer)
  uint64_t nbytes() const { return end - begin; }
  int64_t num_elements() const;  // fits: checked at parse time
};

class SafetensorsFile {
 public:
  // Largest header accepted (the reference implementation's limit).
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  static Result<SafetensorsFile> open(const std::string& path);
  // Parses a buffer already in memory (the fuzzer uses this); `name` is used
  // in errors. The buffer must outlive the returned object.
  static Result<SafetensorsFile> parse(const uint8_t* data, size_t size, const std::string& name);

  const std::string& name() const { return name_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Sorted by name.
  const std::vector<StTensor>& tensors() const { return tensors_; }
  const StTensor* find(std::string_view name) const;

 private:
  MappedFile file_;  // empty when parsed from a caller's buffer
  std::string name_;
  std::map<std::string, std::string> metadata_;
  std::vector<StTensor> tensors_;
};

// Converts a F32/F16/BF16 tensor to float32 into `dst` (num_elements() values).
// `source` names the file in the error for an unsupported dtype.
Status st_to_f32(const StTensor& tensor, float* dst, const std::string& source);
Result<std::vector<float>> st_to_f32(const StTensor& tensor, const std::string& source);

// IEEE half and bfloat16 to float32 (exact: every value is representable).
float st_f16_to_f32(uint16_t bits);
float st_bf16_to_f32(uint16_t bits);

}  // namespace ember
