// SHA-256 against FIPS 180-2 appendix B / NIST CAVP examples and hashlib goldens
// (scripts/gen_sha256_vectors.py), whole and fed in every split.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "scheduler/sha256.h"

namespace ember {
namespace {

std::string hex(const Sha256Digest& d) {
  std::string s;
  char buf[3];
  for (uint8_t b : d) {
    std::snprintf(buf, sizeof(buf), "%02x", b);
    s += buf;
  }
  return s;
}

std::string pattern(size_t n) {
  std::string m(n, '\0');
  for (size_t i = 0; i < n; ++i) m[i] = static_cast<char>((i * 7 + 3) & 0xff);
  return m;
}

TEST(Sha256, FipsExamples) {
  EXPECT_EQ(hex(Sha256::hash("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex(Sha256::hash("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex(Sha256::hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex(Sha256::hash("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
                             "lmnopqrsmnopqrstnopqrstu")),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256, OneMillionA) {
  Sha256 h;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) h.update(chunk);
  EXPECT_EQ(hex(h.finish()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, HashlibGoldensAtPaddingBoundaries) {
  struct Golden {
    size_t length;
    const char* digest;
  };
  const std::vector<Golden> goldens = {
    {0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {1, "084fed08b978af4d7d196a7446a86b58009e636b611db16211b65a9aadff29c5"},
    {3, "6ab0dba1f4f1dfbb37b4f9eeb092c09fca4900ad32bdcd147d8dde35d6c87c35"},
    {54, "160bbf14b458c877b7049e7cb5771dd653930f97d20bdd8ee795c16062906233"},
    {55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"},
    {56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"},
    {57, "35df609437dcfea3279283ab79fd554e2bf78f8f7ae2de532d8ee300b09e8f73"},
    {63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"},
    {64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"},
    {65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"},
    {118, "2c49b89c5aaaaaa69ae70251cc0803f14afaf1a2caa461fa6b083750bc07ce88"},
    {119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"},
    {120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"},
    {127, "a8d23e75d936f303d248888d9b165ee543f4cbafcad3c9dd2a79bd84faa11d07"},
    {128, "d2742f1f4ac6bb7ca2b239ee18402ba8b3f9f8e652d2a72973c2b9ba11c08cf6"},
    {129, "307f8fc2c1622b92762e818d39a185d4d667ad49a4b07ceae1f4afa008a93ec4"},
    {1000, "1e9bc38cbf860b9ec31918b065f9b52476c549a782e0e7990bed8ce3868d2371"},
    {4099, "68950b5dc8001f651c3884f0201a276dd63eb870c6f2d153ed52719ddbce3101"},
  };
  for (const Golden& g : goldens) {
    EXPECT_EQ(hex(Sha256::hash(pattern(g.length))), g.digest) << "length " << g.length;
  }
}

TEST(Sha256, EverySplitMatchesOneShot) {
  for (size_t n : {0u, 1u, 55u, 56u, 64u, 65u, 130u}) {
    const std::string m = pattern(n);
    const Sha256Digest whole = Sha256::hash(m);
    for (size_t cut = 0; cut <= n; ++cut) {
      Sha256 h;
      h.update(m.data(), cut);
      h.update(m.data() + cut, n - cut);
      ASSERT_EQ(h.finish(), whole) << "length " << n << " cut " << cut;
    }
    Sha256 bytewise;
    for (char c : m) bytewise.update(&c, 1);
    EXPECT_EQ(bytewise.finish(), whole) << "length " << n;
  }
}

}  // namespace
}  // namespace ember
