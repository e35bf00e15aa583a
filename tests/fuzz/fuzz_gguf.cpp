// libFuzzer target for the GGUF loader: any byte string must parse to a
// GgufFile or an Error, never crash, hang or allocate without bound. Files that
// parse also go through the metadata lookups, model_config_from_gguf and the
// dequantization of a few small tensors (which must stay inside the buffer).
// Seed corpus: tests/fuzz/corpus/gguf/ (scripts/gen_gguf_fixtures.py).

#include <cstddef>
#include <cstdint>
#include <vector>

#include "models/formats/gguf.h"
#include "models/model_config.h"
#include "models/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A heap copy of exactly `size` bytes, so any overread is caught by ASan.
  std::vector<uint8_t> buf(data, data + size);
  ember::Result<ember::GgufFile> f = ember::GgufFile::parse(buf.data(), buf.size(), "fuzz.gguf");
  if (!f) return 0;

  for (const auto& [key, value] : f->metadata()) {
    (void)f->get_int(key);
    (void)f->get_float(key);
    (void)f->get_string(key);
    (void)f->get_bool(key);
  }
  (void)ember::model_config_from_gguf(*f);
  // Every GGUF load builds its tokenizer: vocabularies are hostile input too.
  if (auto tok = ember::load_tokenizer_from_gguf(*f); tok) {
    const auto ids = (*tok)->encode("Hello, world! 123 日本語 <s>", /*add_special=*/true);
    (void)(*tok)->decode(ids, /*skip_special=*/false);
  }

  // Small tensors only (a budget of elements, not a count, so every type in a seed is reached);
  // a parsed tensor of a supported type must always dequantize.
  int64_t budget = int64_t{1} << 16;
  std::vector<float> out;
  for (const ember::GgufTensor& t : f->tensors()) {
    if (t.num_elements() > budget) continue;
    budget -= t.num_elements();
    out.assign(static_cast<size_t>(t.num_elements()), 0.0f);
    if (ember::Status s = ember::dequantize(t.type, t.data, t.num_elements(), out.data()); !s) __builtin_trap();
  }
  return 0;
}
