// ember_gguf_dump: prints a GGUF file's header, metadata and tensor infos as
// JSON (for tests/integration/test_gguf_parity.py, which compares it with
// gguf-py), and writes dequantized tensors as raw little-endian float32.
//
//   ember_gguf_dump FILE [--dequantize TENSOR OUT.f32]...
// Exit status: 0 ok, 1 the file was rejected (the error goes to stderr), 2 usage.

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/formats/gguf.h"

namespace {

using ember::GgufValue;
using ember::GgufValueType;
using nlohmann::json;

const char* value_type_name(GgufValueType t) {
  static const char* const kNames[] = {"UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
                                       "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : "?";
}

json value_to_json(const GgufValue& v) {
  if (v.type == GgufValueType::kArray) {
    json arr = json::array();
    for (int64_t i : v.ints) arr.push_back(i);
    for (double d : v.floats) arr.push_back(d);
    for (const std::string& s : v.strings) arr.push_back(s);
    for (uint8_t b : v.bools) arr.push_back(b != 0);
    for (const GgufValue& inner : v.arrays) arr.push_back(value_to_json(inner));
    return arr;
  }
  return std::visit([](const auto& x) { return json(x); }, v.scalar);
}

json value_entry(const GgufValue& v) {
  json e = {{"type", value_type_name(v.type)}, {"value", value_to_json(v)}};
  if (v.type == GgufValueType::kArray) e["array_type"] = value_type_name(v.array_type);
  return e;
}

bool write_tensor(const ember::GgufFile& gguf, const std::string& name, const std::string& out_path) {
  const ember::GgufTensor* t = gguf.find_tensor(name);
  if (t == nullptr) {
    std::cerr << "no tensor named '" << name << "'\n";
    return false;
  }
  std::vector<float> values(static_cast<size_t>(t->num_elements()));
  if (ember::Status s = ember::dequantize(t->type, t->data, t->num_elements(), values.data()); !s) {
    std::cerr << s.error().message << "\n";
    return false;
  }
  std::FILE* f = std::fopen(out_path.c_str(), "wb");
  if (f == nullptr) {
    std::cerr << "cannot write " << out_path << "\n";
    return false;
  }
  const size_t written = std::fwrite(values.data(), sizeof(float), values.size(), f);
  const bool ok = std::fclose(f) == 0 && written == values.size();
  if (!ok) std::cerr << "short write to " << out_path << "\n";
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || (argc - 2) % 3 != 0) {
    std::cerr << "usage: ember_gguf_dump FILE [--dequantize TENSOR OUT.f32]...\n";
    return 2;
  }
  ember::Result<ember::GgufFile> gguf = ember::GgufFile::open(argv[1]);
  if (!gguf) {
    std::cerr << gguf.error().message << "\n";
    return 1;
  }
  json out;
  out["version"] = gguf->version();
  out["alignment"] = gguf->alignment();
  out["data_offset"] = gguf->data_offset();
  json metadata = json::object();
  for (const auto& [key, value] : gguf->metadata()) metadata[key] = value_entry(value);
  out["metadata"] = std::move(metadata);
  json tensors = json::array();
  for (const ember::GgufTensor& t : gguf->tensors()) {
    tensors.push_back({{"name", t.name},
                       {"shape", t.shape},
                       {"type", ember::ggml_type_name(t.type)},
                       {"type_id", static_cast<uint32_t>(t.type)},
                       {"offset", t.offset},
                       {"relative_offset", t.offset - gguf->data_offset()},
                       {"nbytes", t.nbytes}});
  }
  out["tensors"] = std::move(tensors);
  // Invalid UTF-8 in a string is replaced rather than aborting the dump.
  std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";

  for (int i = 2; i + 2 < argc; i += 3) {
    if (std::string(argv[i]) != "--dequantize") {
      std::cerr << "unknown option " << argv[i] << "\n";
      return 2;
    }
    if (!write_tensor(*gguf, argv[i + 1], argv[i + 2])) return 1;
  }
  return 0;
}
