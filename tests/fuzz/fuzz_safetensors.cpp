// libFuzzer target: safetensors header parsing and tensor conversion.
// Any input must yield a SafetensorsFile or an Error — never a crash, a hang,
// an out-of-bounds read or an allocation beyond the input's size.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "models/formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = ember::SafetensorsFile::parse(data, size, "fuzz");
  if (!file) return 0;
  // Convert a few tensors: every view must lie inside the buffer (ASan checks
  // the reads); a converted tensor is at most 2x the input (F16 -> F32).
  int converted = 0;
  for (const ember::StTensor& t : file->tensors()) {
    if (converted++ == 4) break;
    if (file->find(t.name) != &t) __builtin_trap();  // lookup agrees with the listing
    auto values = ember::st_to_f32(t, "fuzz");
    if (values.ok() && values->size() != static_cast<size_t>(t.num_elements())) __builtin_trap();
  }
  return 0;
}
