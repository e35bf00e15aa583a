// --config FILE.json: JSON keys become flags placed before the user's own.

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "cli/config_file.h"

namespace ember {
namespace {

TEST(ConfigFile, JsonObjectBecomesFlags) {
  auto flags = flags_from_json(R"({"max_num_seqs": 64, "enable-prefix-caching": false, "enforce-eager": true,
                                   "gpu-memory-utilization": 0.5, "served-model-name": ["a", "b"], "host": "0.0.0.0"})",
                               "t.json");
  ASSERT_TRUE(flags.ok()) << flags.error().message;
  // nlohmann::json objects iterate in key order.
  const std::vector<std::string> want = {"--no-enable-prefix-caching", "--enforce-eager", "--gpu-memory-utilization",
                                         "0.5", "--host", "0.0.0.0", "--max-num-seqs", "64", "--served-model-name", "a",
                                         "--served-model-name", "b"};
  EXPECT_EQ(*flags, want);
}

TEST(ConfigFile, RejectsBadInput) {
  EXPECT_FALSE(flags_from_json("[1, 2]", "t.json").ok());
  EXPECT_FALSE(flags_from_json("{not json", "t.json").ok());
  EXPECT_FALSE(flags_from_json(R"({"port": {"nested": 1}})", "t.json").ok());
  EXPECT_FALSE(flags_from_json(R"({"--port": 1})", "t.json").ok());
  auto err = flags_from_json(R"({"port": null})", "cfg.json");
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.error().message.find("cfg.json"), std::string::npos);
}

TEST(ConfigFile, SplicedAfterSubcommandSoCommandLineWins) {
  const std::string path = ::testing::TempDir() + "/ember_cfg.json";
  {
    std::ofstream out(path);
    out << R"({"port": 9000})";
  }
  std::vector<std::string> args = {"ember", "serve", "--config", path, "--port", "8001"};
  ASSERT_TRUE(expand_config_file(&args).ok());
  EXPECT_EQ(args, (std::vector<std::string>{"ember", "serve", "--port", "9000", "--port", "8001"}));

  std::vector<std::string> missing = {"ember", "serve", "--config=/nonexistent.json"};
  EXPECT_FALSE(expand_config_file(&missing).ok());
  std::vector<std::string> no_sub = {"ember", "--config", path};
  EXPECT_FALSE(expand_config_file(&no_sub).ok());
  std::remove(path.c_str());
}

}  // namespace
}  // namespace ember
