// Dequantization against gguf-py: tests/fixtures/gguf/dequant.gguf holds one
// tensor per supported type and golden/<name>.f32 its values from
// gguf.quants.dequantize (scripts/gen_gguf_fixtures.py). The comparison is
// bit-exact: ember does the same float32 operations in the same order.
// The same file, written by gguf-py's GGUFWriter, checks every metadata type.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "models/formats/gguf.h"

namespace ember {
namespace {

const std::string kDir = std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/gguf/";

std::vector<uint32_t> read_golden_bits(const std::string& name) {
  std::ifstream in(kDir + "golden/" + name + ".f32", std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<uint32_t> bits(bytes.size() / 4);
  std::memcpy(bits.data(), bytes.data(), bits.size() * 4);
  return bits;
}

class GgufFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Result<GgufFile> f = GgufFile::open(kDir + "dequant.gguf");
    ASSERT_TRUE(f.ok()) << f.error().message << " (run scripts/gen_gguf_fixtures.py)";
    file_ = new GgufFile(std::move(f).value());
  }
  static void TearDownTestSuite() {
    delete file_;
    file_ = nullptr;
  }
  static GgufFile* file_;
};
GgufFile* GgufFixture::file_ = nullptr;

struct Expected {
  const char* name;
  GgmlType type;
  std::vector<int64_t> shape;
};

TEST_F(GgufFixture, EveryTypeMatchesGgufPyBitExact) {
  const Expected cases[] = {
      {"f32", GgmlType::kF32, {8, 4, 3, 2}},   {"f16", GgmlType::kF16, {32, 2}},
      {"bf16", GgmlType::kBF16, {64, 3}},      {"q8_0", GgmlType::kQ8_0, {128, 3}},
      {"q4_0", GgmlType::kQ4_0, {128, 3}},     {"q4_1", GgmlType::kQ4_1, {128, 3}},
      {"q4_k", GgmlType::kQ4_K, {512, 2}},     {"q6_k", GgmlType::kQ6_K, {512, 2}},
  };
  ASSERT_EQ(file_->tensors().size(), std::size(cases));
  for (const Expected& c : cases) {
    SCOPED_TRACE(c.name);
    const GgufTensor* t = file_->find_tensor(c.name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->type, c.type);
    EXPECT_EQ(t->shape, c.shape);
    EXPECT_EQ(t->offset % 64, 0u);  // general.alignment = 64 in this file
    const std::vector<uint32_t> golden = read_golden_bits(c.name);
    ASSERT_EQ(static_cast<int64_t>(golden.size()), t->num_elements());
    std::vector<float> out(golden.size());
    ASSERT_TRUE(dequantize(t->type, t->data, t->num_elements(), out.data()).ok());
    int mismatches = 0;
    for (size_t i = 0; i < golden.size(); ++i) {
      uint32_t bits = 0;
      std::memcpy(&bits, &out[i], 4);
      if (bits != golden[i] && ++mismatches <= 5) {
        ADD_FAILURE() << "element " << i << ": ember 0x" << std::hex << bits << " gguf-py 0x" << golden[i];
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
}

TEST_F(GgufFixture, F16EdgeValues) {
  const GgufTensor* t = file_->find_tensor("f16");
  ASSERT_NE(t, nullptr);
  std::vector<float> out(static_cast<size_t>(t->num_elements()));
  ASSERT_TRUE(dequantize(t->type, t->data, t->num_elements(), out.data()).ok());
  EXPECT_EQ(out[2], 0x1p-24f);            // smallest subnormal
  EXPECT_EQ(out[8], 65504.0f);            // largest finite
  EXPECT_TRUE(std::isinf(out[10]) && out[10] > 0);
  EXPECT_TRUE(std::signbit(out[1]) && out[1] == 0.0f);
  EXPECT_TRUE(std::isnan(out[12]));
}

// Every prefix of the gguf-py file fails with an offset, unless it only drops
// the padding gguf-py writes after the last tensor.
TEST_F(GgufFixture, TruncatedAtEveryOffset) {
  std::ifstream in(kDir + "dequant.gguf", std::ios::binary);
  const std::vector<uint8_t> full((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t data_end = 0;
  for (const GgufTensor& t : file_->tensors()) data_end = std::max(data_end, t.offset + t.nbytes);
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    Result<GgufFile> f = GgufFile::parse(cut.data(), cut.size(), "cut.gguf");
    if (n >= data_end) {
      EXPECT_TRUE(f.ok()) << n;
    } else {
      ASSERT_FALSE(f.ok()) << n;
      ASSERT_EQ(f.error().message.rfind("cut.gguf: offset ", 0), 0u) << f.error().message;
    }
  }
}

TEST_F(GgufFixture, EveryMetadataTypeFromGgufPy) {
  const GgufFile& f = *file_;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.get_string("general.architecture"), "test");
  EXPECT_EQ(f.get_int("test.u8"), 200);
  EXPECT_EQ(f.get_int("test.i8"), -100);
  EXPECT_EQ(f.get_int("test.u16"), 60000);
  EXPECT_EQ(f.get_int("test.i16"), -30000);
  EXPECT_EQ(f.get_int("test.u32"), 4000000000LL);
  EXPECT_EQ(f.get_int("test.i32"), -2000000000);
  EXPECT_EQ(f.get_float("test.f32"), static_cast<double>(0.1f));
  EXPECT_EQ(std::get<uint64_t>(f.find("test.u64")->scalar), 18000000000000000000ULL);
  EXPECT_EQ(f.get_int("test.i64"), -9000000000000000000LL);
  EXPECT_EQ(f.get_float("test.f64"), -2.5e300);
  EXPECT_EQ(f.get_bool("test.bool"), true);
  EXPECT_EQ(f.get_string("test.string"), "h\xc3\xa9llo, GGUF");
  EXPECT_EQ(f.find("test.arr_i32")->ints, (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.find("test.arr_i32")->array_type, GgufValueType::kInt32);
  EXPECT_EQ(f.find("test.arr_u8")->ints, (std::vector<int64_t>{0, 255}));
  EXPECT_EQ(f.find("test.arr_f32")->floats, (std::vector<double>{0.5, -1.25}));
  EXPECT_EQ(f.find("test.arr_bool")->bools, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(f.find("test.arr_str")->strings, (std::vector<std::string>{"a", "", "ccc"}));
  const GgufValue* nested = f.find("test.arr_nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->arrays.size(), 2u);
  EXPECT_EQ(nested->arrays[0].ints, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(nested->arrays[1].ints, (std::vector<int64_t>{3}));
}

}  // namespace
}  // namespace ember
