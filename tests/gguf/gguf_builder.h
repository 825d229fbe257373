#pragma once
// Writes small GGUF files byte by byte for tests (valid ones, which tests then corrupt).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace vela::test {

class GgufBuilder {
  public:
    explicit GgufBuilder(uint32_t version = 3) : version_(version) {}

    void kv_u32(const std::string& key, uint32_t v) {
        kv_header(key, 4);
        put(v);
        ++n_kv_;
    }
    void kv_f32(const std::string& key, float v) {
        kv_header(key, 6);
        put(v);
        ++n_kv_;
    }
    void kv_str(const std::string& key, const std::string& v) {
        kv_header(key, 8);
        str(v);
        ++n_kv_;
    }
    void kv_str_array(const std::string& key, const std::vector<std::string>& v) {
        kv_header(key, 9);
        put(uint32_t{8});
        put(uint64_t{v.size()});
        for (const auto& s : v) str(s);
        ++n_kv_;
    }
    // An F32 tensor of the given shape; data filled with 0, 1, 2, ...
    void tensor_f32(const std::string& name, std::vector<uint64_t> shape) {
        uint64_t n = 1;
        for (uint64_t d : shape) n *= d;
        Tensor t{name, shape, 0, data_.size()};
        for (uint64_t i = 0; i < n; ++i) {
            float f = static_cast<float>(i);
            append_bytes(data_, &f, 4);
        }
        while (data_.size() % 32 != 0) data_.push_back(0);
        tensors_.push_back(t);
    }

    std::vector<uint8_t> build() const {
        std::vector<uint8_t> out;
        auto put_to = [&out](const void* p, size_t n) { append_bytes(out, p, n); };
        const uint32_t magic = 0x46554747u;
        put_to(&magic, 4);
        put_to(&version_, 4);
        const uint64_t nt = tensors_.size(), nk = n_kv_;
        put_to(&nt, 8);
        put_to(&nk, 8);
        put_to(kv_.data(), kv_.size());
        for (const Tensor& t : tensors_) {
            const uint64_t len = t.name.size();
            put_to(&len, 8);
            put_to(t.name.data(), t.name.size());
            const uint32_t nd = static_cast<uint32_t>(t.shape.size());
            put_to(&nd, 4);
            for (uint64_t d : t.shape) put_to(&d, 8);
            put_to(&t.type, 4);
            put_to(&t.offset, 8);
        }
        while (out.size() % 32 != 0) out.push_back(0);
        put_to(data_.data(), data_.size());
        return out;
    }

  private:
    struct Tensor {
        std::string name;
        std::vector<uint64_t> shape;
        uint32_t type;
        uint64_t offset;
    };
    // resize + memcpy rather than vector::insert of a byte range: GCC 12 warns falsely
    // (-Wstringop-overflow) on the latter once inlined into some callers.
    static void append_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
        if (n == 0) return;
        const size_t at = out.size();
        out.resize(at + n);
        std::memcpy(out.data() + at, p, n);
    }
    template <class T>
    void put(T v) {
        append_bytes(kv_, &v, sizeof(T));
    }
    void str(const std::string& s) {
        put(uint64_t{s.size()});
        append_bytes(kv_, s.data(), s.size());
    }
    void kv_header(const std::string& key, uint32_t type) {
        str(key);
        put(type);
    }

    uint32_t version_;
    uint64_t n_kv_ = 0;
    std::vector<uint8_t> kv_;
    std::vector<Tensor> tensors_;
    std::vector<uint8_t> data_;
};

}  // namespace vela::test
