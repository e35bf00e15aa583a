// Dumps a safetensors file (or a Hugging Face model directory) as JSON, for
// tests/integration/test_safetensors_parity.py to compare with the
// `safetensors` package: metadata, and per tensor dtype, shape and the
// float32 bit pattern of every element (null for unsupported dtypes).
//
//   ember_st_dump FILE.safetensors | MODEL_DIR

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "models/formats/hf_model_dir.h"
#include "models/formats/safetensors.h"

namespace {

nlohmann::json dump_tensor(const ember::StTensor& t, const std::string& source) {
  nlohmann::json j;
  j["dtype"] = ember::st_dtype_name(t.dtype);
  j["shape"] = t.shape;
  auto values = ember::st_to_f32(t, source);
  if (!values) {
    j["f32_bits"] = nullptr;
    j["error"] = values.error().message;
    return j;
  }
  std::vector<uint32_t> bits(values->size());
  if (!bits.empty()) std::memcpy(bits.data(), values->data(), bits.size() * 4);
  j["f32_bits"] = bits;
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FILE.safetensors | MODEL_DIR\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  nlohmann::json out;
  if (std::filesystem::is_directory(path)) {
    auto dir = ember::HfModelDir::open(path);
    if (!dir) {
      std::fprintf(stderr, "error: %s\n", dir.error().message.c_str());
      return 1;
    }
    out["architecture"] = dir->config().architecture;
    for (const std::string& name : dir->tensor_names())
      out["tensors"][name] = dump_tensor(*dir->find_tensor(name), dir->tensor_source(name));
  } else {
    auto file = ember::SafetensorsFile::open(path);
    if (!file) {
      std::fprintf(stderr, "error: %s\n", file.error().message.c_str());
      return 1;
    }
    out["metadata"] = file->metadata();
    out["tensors"] = nlohmann::json::object();
    for (const ember::StTensor& t : file->tensors()) out["tensors"][t.name] = dump_tensor(t, path);
  }
  std::cout << out.dump() << "\n";
  return 0;
}
