// libFuzzer target for tokenizer.json: any bytes must load to a tokenizer or
// an Error (never a crash, a stack overflow or an unbounded allocation), and a
// tokenizer that loads must encode and decode text. The loader reads a path,
// so each input goes through a per-process temporary file.
// Seed corpus: tests/fuzz/corpus/tokenizer_json/ (small trained tokenizers).

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "models/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/ember_fuzz_tokenizer_" + std::to_string(getpid()) + ".json";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto tok = ember::load_tokenizer_json(path);
  if (!tok) return 0;
  const auto ids = (*tok)->encode("Hello, world! 123  日本語 \xf0\x9f\x98\x80 <|endoftext|>", /*add_special=*/true);
  (void)(*tok)->decode(ids, /*skip_special=*/false);
  ember::IncrementalDetokenizer detok(**tok, /*skip_special=*/true);
  for (int32_t id : ids) (void)detok.push(id);
  (void)detok.flush();
  return 0;
}
