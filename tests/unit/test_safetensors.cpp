// safetensors parsing and the Hugging Face model directory loader.
// Fixtures come from scripts/gen_safetensors_fixtures.py (written by the
// `safetensors` package); every element is compared bit for bit with the
// float32 values numpy decoded. Hostile buffers are built by hand here.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "models/formats/hf_model_dir.h"
#include "models/formats/safetensors.h"

namespace ember {
namespace {

namespace fs = std::filesystem;
const std::string kFixtures = std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/safetensors";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json reference() { return nlohmann::json::parse(slurp(kFixtures + "/reference.json")); }

// Every tensor of `ref` is found by `find` with the right dtype, shape and values.
void expect_matches_reference(const std::function<const StTensor*(const std::string&)>& find,
                              const std::string& source) {
  const nlohmann::json ref = reference();
  ASSERT_EQ(ref.size(), 8u);
  for (const auto& [name, entry] : ref.items()) {
    SCOPED_TRACE(name);
    const StTensor* t = find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(st_dtype_name(t->dtype), entry["dtype"].get<std::string>());
    EXPECT_EQ(t->shape, entry["shape"].get<std::vector<int64_t>>());
    if (!entry.contains("f32_bits")) {  // I64: parsed, but not convertible
      auto v = st_to_f32(*t, source);
      ASSERT_FALSE(v.ok());
      EXPECT_NE(v.error().message.find("I64"), std::string::npos) << v.error().message;
      continue;
    }
    auto v = st_to_f32(*t, source);
    ASSERT_TRUE(v.ok()) << v.error().message;
    const auto bits = entry["f32_bits"].get<std::vector<uint32_t>>();
    ASSERT_EQ(v->size(), bits.size());
    for (size_t i = 0; i < bits.size(); ++i) {
      uint32_t got;
      std::memcpy(&got, &(*v)[i], 4);
      ASSERT_EQ(got, bits[i]) << "element " << i;
    }
  }
}

TEST(Safetensors, SingleFileMatchesReference) {
  const std::string path = kFixtures + "/single/model.safetensors";
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->tensors().size(), 8u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("source"), "ember fixture");
  expect_matches_reference([&](const std::string& n) { return f->find(n); }, path);
  EXPECT_EQ(f->find("no.such.tensor"), nullptr);
  // The tensor bytes are the file's bytes at 8 + header length + begin.
  const std::string bytes = slurp(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const StTensor* emb = f->find("model.embed_tokens.weight");
  ASSERT_EQ(emb->nbytes(), 16u * 8 * 4);
  EXPECT_EQ(std::memcmp(emb->data, bytes.data() + 8 + header_len + emb->begin, emb->nbytes()), 0);
  // Two tensors of one file are views of one buffer: their distance is the distance of their offsets.
  const StTensor* norm = f->find("model.norm.weight");
  EXPECT_EQ(norm->data - emb->data, static_cast<ptrdiff_t>(norm->begin) - static_cast<ptrdiff_t>(emb->begin));
}

TEST(Safetensors, HalfConversionIsExactForAllBitPatterns) {
  // Independent reference: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024.
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    const float got = st_f16_to_f32(static_cast<uint16_t>(h));
    if (e == 31) {
      ASSERT_TRUE(m == 0 ? std::isinf(got) : std::isnan(got)) << h;
      ASSERT_EQ(std::signbit(got), s == 1) << h;
      continue;
    }
    const double mag = e == 0 ? std::ldexp(m / 1024.0, -14) : std::ldexp(1 + m / 1024.0, int(e) - 15);
    const float want = static_cast<float>(s ? -mag : mag);
    ASSERT_EQ(std::memcmp(&got, &want, 4), 0) << "half bits " << h;
  }
  EXPECT_EQ(st_bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(st_bf16_to_f32(0xC020), -2.5f);
}

TEST(HfModelDir, SingleFileDirectory) {
  auto d = HfModelDir::open(kFixtures + "/single");
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->config().hidden_size, 8);
  EXPECT_EQ(d->config().eos_token_ids, std::vector<int64_t>({2, 3}));  // generation_config.json wins
  EXPECT_EQ(d->tensor_names().size(), 8u);
  EXPECT_EQ(d->tensor_names().front(), "extra.empty");
  EXPECT_FALSE(d->tokenizer_config_path().empty());
  EXPECT_TRUE(d->tokenizer_json_path().empty());
  EXPECT_TRUE(d->tokenizer_model_path().empty());
  expect_matches_reference([&](const std::string& n) { return d->find_tensor(n); }, "single");
}

TEST(HfModelDir, ShardedDirectory) {
  auto d = HfModelDir::open(kFixtures + "/sharded");
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->tensor_names().size(), 8u);
  EXPECT_NE(d->tensor_source("extra.empty").find("model-00001-of-00002"), std::string::npos);
  EXPECT_NE(d->tensor_source("extra.positions").find("model-00002-of-00002"), std::string::npos);
  expect_matches_reference([&](const std::string& n) { return d->find_tensor(n); }, "sharded");
}

// ---- hostile buffers --------------------------------------------------------

// An 8-byte length (given, or the header's), the header, then `data` bytes.
std::string make_file(const std::string& header, size_t data = 0, uint64_t len = UINT64_MAX) {
  if (len == UINT64_MAX) len = header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + header + std::string(data, '\x11');
}

Result<SafetensorsFile> parse(const std::string& bytes) {
  return SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "hostile");
}

void expect_rejected(const std::string& bytes, const std::string& needle) {
  auto f = parse(bytes);
  ASSERT_FALSE(f.ok()) << "accepted; expected: " << needle;
  EXPECT_NE(f.error().message.find("hostile"), std::string::npos) << f.error().message;
  EXPECT_NE(f.error().message.find(needle), std::string::npos) << f.error().message;
}

TEST(SafetensorsHostile, ValidHandMadeFileParses) {
  auto f = parse(make_file(R"({"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F8_E4M3","shape":[],"data_offsets":[8,9]},)"
                           R"("c":{"dtype":"F32","shape":[0],"data_offsets":[9,9]}})", 9));
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->find("b")->num_elements(), 1);  // a scalar
  EXPECT_FALSE(st_to_f32(*f->find("b"), "x").ok());
  EXPECT_TRUE(st_to_f32(*f->find("c"), "x").ok());
}

TEST(SafetensorsHostile, TruncatedAtEveryOffset) {
  const std::string bytes = slurp(kFixtures + "/single/model.safetensors");
  ASSERT_GT(bytes.size(), 100u);
  ASSERT_TRUE(parse(bytes).ok());
  for (size_t n = 0; n < bytes.size(); ++n)
    ASSERT_FALSE(parse(bytes.substr(0, n)).ok()) << "prefix of " << n << " bytes accepted";
}

TEST(SafetensorsHostile, HeaderLength) {
  expect_rejected("", "8-byte header length");
  expect_rejected(make_file("{}", 0, 1ull << 62), "exceeds the 100000000-byte limit");
  expect_rejected(make_file("{}", 0, UINT64_MAX - 1), "limit");
  expect_rejected(make_file("{}", 0, 3), "exceeds the 2 bytes after it");
  EXPECT_TRUE(parse(make_file("{}")).ok());
  EXPECT_TRUE(parse(make_file("{}    ")).ok());  // writers pad the header with spaces
}

TEST(SafetensorsHostile, BadJson) {
  expect_rejected(make_file("{\"a\":"), "not valid JSON");
  expect_rejected(make_file("[1,2]"), "not a JSON object");
  expect_rejected(make_file(std::string("{\"a\xff\":1}")), "not valid JSON");
  expect_rejected(make_file(std::string(5000, '[')), "nested deeper than 3");
  expect_rejected(make_file(R"({"__metadata__":{"k":1}})"), "__metadata__");
  expect_rejected(make_file(R"({"__metadata__":[]})"), "__metadata__");
  expect_rejected(make_file(R"({"t":[]})"), "not an object");
}

TEST(SafetensorsHostile, TensorEntries) {
  const auto entry = [](const std::string& body) { return make_file("{\"t\":{" + body + "}}", 16); };
  expect_rejected(entry(R"("dtype":"F32","shape":[4],"data_offsets":[0,16],"x":1)"), "unknown field 'x'");
  expect_rejected(entry(R"("shape":[4],"data_offsets":[0,16])"), "dtype");
  expect_rejected(entry(R"("dtype":"Q4_0","shape":[4],"data_offsets":[0,16])"), "unknown dtype 'Q4_0'");
  expect_rejected(entry(R"("dtype":7,"shape":[4],"data_offsets":[0,16])"), "dtype");
  expect_rejected(entry(R"("dtype":"F32","shape":4,"data_offsets":[0,16])"), "shape");
  expect_rejected(entry(R"("dtype":"F32","shape":[-4],"data_offsets":[0,16])"), "non-negative");
  expect_rejected(entry(R"("dtype":"F32","shape":[4.0],"data_offsets":[0,16])"), "non-negative");
  expect_rejected(entry(R"("dtype":"F32","shape":[4],"data_offsets":[0])"), "data_offsets");
  expect_rejected(entry(R"("dtype":"F32","shape":[4],"data_offsets":[-1,15])"), "data_offsets");
  expect_rejected(entry(R"("dtype":"F32","shape":[4],"data_offsets":[0,16,20])"), "data_offsets");
}

TEST(SafetensorsHostile, OffsetsOutOfRange) {
  const auto one = [](const std::string& offsets, size_t data) {
    return make_file(R"({"t":{"dtype":"U8","shape":[4],"data_offsets":)" + offsets + "}}", data);
  };
  expect_rejected(one("[0,4]", 3), "outside the data section of 3 bytes");
  expect_rejected(one("[4,0]", 8), "outside");
  expect_rejected(one("[18446744073709551612,18446744073709551615]", 8), "outside");
  expect_rejected(one("[18446744073709551615,3]", 8), "outside");
  EXPECT_TRUE(parse(one("[4,8]", 8)).ok());
}

TEST(SafetensorsHostile, SizeMismatchAndShapeOverflow) {
  const auto one = [](const std::string& dtype, const std::string& shape, const std::string& end) {
    return make_file(R"({"t":{"dtype":")" + dtype + R"(","shape":)" + shape +
                         R"(,"data_offsets":[0,)" + end + "]}}", 64);
  };
  expect_rejected(one("F32", "[4]", "12"), "12 bytes but dtype F32 and shape need 16");
  expect_rejected(one("BF16", "[2,3]", "6"), "need 12");
  expect_rejected(one("F32", "[4294967296,4294967296]", "16"), "overflows");
  expect_rejected(one("F64", "[4611686018427387904]", "16"), "overflows");
  expect_rejected(one("U8", "[9223372036854775808]", "16"), "overflows");
  expect_rejected(one("F32", "[18446744073709551616]", "16"), "non-negative integers");  // parsed as a double
  expect_rejected(one("F32", "[0,18446744073709551615]", "0"), "overflows");
  EXPECT_TRUE(parse(one("F32", "[0,1000000]", "0")).ok());  // empty tensors are fine
}

TEST(SafetensorsHostile, Overlap) {
  expect_rejected(make_file(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"U8","shape":[4],"data_offsets":[3,7]}})", 8),
                  "'a' and 'b' overlap");
  expect_rejected(make_file(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", 8),
                  "overlap");
  expect_rejected(make_file(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 8),
                  "overlap");
}

// ---- directory loader errors --------------------------------------------------

class HfModelDirErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ember_hfdir_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file(kFixtures + "/sharded/config.json", dir_ / "config.json");
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  void shard(const std::string& name, const std::string& tensors_json, size_t data) {
    write(name, make_file(tensors_json, data));
  }
  std::string open_error() {
    auto d = HfModelDir::open(dir_.string());
    return d.ok() ? "(opened)" : d.error().message;
  }
  fs::path dir_;
};

const char* kTensorA = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
const char* kTensorB = R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";

TEST_F(HfModelDirErrors, MissingPieces) {
  EXPECT_NE(open_error().find("no model.safetensors"), std::string::npos) << open_error();
  fs::remove(dir_ / "config.json");
  EXPECT_NE(open_error().find("config.json: missing"), std::string::npos) << open_error();
  EXPECT_NE(HfModelDir::open((dir_ / "nope").string()).error().message.find("not a directory"),
            std::string::npos);
}

TEST_F(HfModelDirErrors, BadConfigIsNamed) {
  write("config.json", R"({"model_type": "llama", "hidden_size": "8"})");
  shard("model.safetensors", kTensorA, 2);
  EXPECT_NE(open_error().find("config.json: field 'hidden_size'"), std::string::npos) << open_error();
}

TEST_F(HfModelDirErrors, PathTraversalInIndex) {
  for (const char* bad : {"../model.safetensors", "/etc/passwd", "sub/x.safetensors", "..", "a\\\\b", ""}) {
    write("model.safetensors.index.json",
          std::string(R"({"weight_map": {"a": ")") + bad + R"("}})");
    EXPECT_NE(open_error().find("not a plain file name"), std::string::npos) << bad << ": " << open_error();
  }
}

TEST_F(HfModelDirErrors, IndexConsistency) {
  shard("s1.safetensors", kTensorA, 2);
  shard("s2.safetensors", kTensorB, 2);
  write("model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}})");
  EXPECT_NE(open_error().find("'b' is listed in shard 's1.safetensors' but missing"), std::string::npos)
      << open_error();
  shard("s2.safetensors", kTensorA, 2);  // now both shards hold 'a'
  write("model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
  EXPECT_NE(open_error().find("missing"), std::string::npos) << open_error();
  write("model.safetensors.index.json", R"({"weight_map": {"a": "s2.safetensors", "x": "s1.safetensors"}})");
  EXPECT_NE(open_error().find("'x' is listed"), std::string::npos) << open_error();
  shard("s2.safetensors", R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                          R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", 4);
  write("model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
  EXPECT_NE(open_error().find("present in both"), std::string::npos) << open_error();
  write("model.safetensors.index.json", R"({"weight_map": {"a": "s3.safetensors"}})");
  EXPECT_NE(open_error().find("s3.safetensors: cannot open"), std::string::npos) << open_error();
  write("model.safetensors.index.json", R"({"weight_map": {"a": 3}})");
  EXPECT_NE(open_error().find("not a string"), std::string::npos) << open_error();
  write("model.safetensors.index.json", R"({"weight_map": {}})");
  EXPECT_NE(open_error().find("empty"), std::string::npos) << open_error();
  write("model.safetensors.index.json", R"({"metadata": {}})");
  EXPECT_NE(open_error().find("'weight_map'"), std::string::npos) << open_error();
  // Consistent: opens, each shard once.
  shard("s2.safetensors", kTensorB, 2);
  write("model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
  auto d = HfModelDir::open(dir_.string());
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->tensor_names(), std::vector<std::string>({"a", "b"}));
}

TEST_F(HfModelDirErrors, CorruptShardIsNamed) {
  write("model.safetensors", make_file("{}", 0, 1000));
  EXPECT_NE(open_error().find("model.safetensors: header length 1000"), std::string::npos) << open_error();
}

}  // namespace
}  // namespace ember
