#pragma once
// GGUF v2/v3 reader. The file is memory-mapped; every count, length and offset is checked
// against the bytes that are actually there before it is used, so a corrupt or truncated file
// raises FormatError naming the problem and never reads out of bounds.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace vela::gguf {

enum class ValueType : uint32_t {
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
};

std::string_view value_type_name(ValueType t);

// One metadata value. Scalars keep their exact integer or float value; arrays hold their
// elements (all of type elem_type).
struct Value {
    ValueType type = ValueType::UInt8;
    uint64_t u = 0;  // unsigned integers and bool
    int64_t i = 0;   // signed integers
    double f = 0;    // floats
    std::string s;   // strings
    ValueType elem_type = ValueType::UInt8;
    std::vector<Value> array;

    bool is_integer() const;
    bool is_float() const { return type == ValueType::Float32 || type == ValueType::Float64; }
    // Integer value of an integer or bool; nullopt for other types or unsigned values > INT64_MAX.
    std::optional<int64_t> as_int() const;
    // Numeric value of an integer or float.
    std::optional<double> as_double() const;
};

struct TensorInfo {
    std::string name;
    DType type = DType::F32;
    std::vector<int64_t> shape;  // ggml order: shape[0] is the contiguous (row) dimension
    uint64_t offset = 0;         // from the start of the data section
    size_t nbytes = 0;
    const uint8_t* data = nullptr;

    int64_t n_elements() const;
    int64_t dim(size_t i) const { return i < shape.size() ? shape[i] : 1; }
};

class File {
  public:
    // Maps and parses a file; throws FormatError (or Error for I/O problems) naming the path.
    static File open(const std::string& path);
    // Parses bytes that the caller keeps alive for the File's lifetime (tests, fuzzing).
    static File parse(const uint8_t* data, size_t size, std::string name = "<memory>");

    File(File&&) noexcept;
    File& operator=(File&&) noexcept;
    ~File();

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    size_t size() const { return size_; }
    uint32_t alignment() const { return alignment_; }

    const std::map<std::string, Value>& metadata() const { return metadata_; }
    const Value* find(std::string_view key) const;
    std::optional<int64_t> get_int(std::string_view key) const;
    std::optional<double> get_float(std::string_view key) const;
    std::optional<std::string> get_string(std::string_view key) const;
    std::optional<bool> get_bool(std::string_view key) const;
    // Array accessors: nullopt when the key is absent; FormatError when the type is wrong.
    std::optional<std::vector<std::string>> get_string_array(std::string_view key) const;
    std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;
    std::optional<std::vector<double>> get_float_array(std::string_view key) const;
    // As above, but a missing key or a wrong type is a FormatError naming the key.
    int64_t require_int(std::string_view key) const;
    std::string require_string(std::string_view key) const;

    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(std::string_view name) const;
    // FormatError "missing tensor NAME" when absent.
    const TensorInfo& tensor(std::string_view name) const;

  private:
    File() = default;
    struct Mapping;
    void parse_all();

    std::string path_;
    std::unique_ptr<Mapping> mapping_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    uint32_t version_ = 0;
    uint32_t alignment_ = 32;
    std::map<std::string, Value> metadata_;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t, std::less<>> tensor_index_;
};

// A one-line description of a value for `vela info` (arrays are summarised).
std::string describe(const Value& v);

}  // namespace vela::gguf
