#pragma once
// The float64 reference logits of the tiny random GGUFs in tests/model/data
// (scripts/golden/gen_tiny_models.py), by variant name.
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace vela::test {

inline const std::string kTinyData = std::string(VELA_SOURCE_DIR) + "/tests/model/data/";

// The RoPE variants' and Gemma 3's logits live in their own files so that adding them left the
// original fixtures byte-identical. null when no file has the variant.
inline nlohmann::json expected_logits(const std::string& variant) {
    for (const char* file :
         {"tiny_models_expected.json", "tiny_rope_expected.json", "tiny_gemma3_expected.json"}) {
        std::ifstream in(kTinyData + file);
        if (!in) continue;
        auto all = nlohmann::json::parse(in);
        if (all.contains(variant)) return all[variant];
    }
    return nullptr;
}

}  // namespace vela::test
