#include "gguf/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace vela::gguf {
namespace {

constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 4;

// Sequential little-endian reader that refuses to step past the end of the buffer.
class Cursor {
  public:
    Cursor(const uint8_t* data, size_t size, const std::string& path)
        : data_(data), size_(size), path_(path) {}

    size_t pos() const { return pos_; }
    size_t remaining() const { return size_ - pos_; }

    template <class T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string read_string(const char* what) {
        const uint64_t len = read<uint64_t>(what);
        need(len, what);
        std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
        pos_ += static_cast<size_t>(len);
        return s;
    }

    void need(uint64_t n, const char* what) const {
        if (n > remaining()) {
            fail<FormatError>("{}: truncated file: {} needs {} bytes at offset {}, only {} left",
                              path_, what, n, pos_, remaining());
        }
    }

  private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& path_;
};

size_t scalar_size(ValueType t) {
    switch (t) {
        case ValueType::UInt8:
        case ValueType::Int8:
        case ValueType::Bool:
            return 1;
        case ValueType::UInt16:
        case ValueType::Int16:
            return 2;
        case ValueType::UInt32:
        case ValueType::Int32:
        case ValueType::Float32:
            return 4;
        case ValueType::UInt64:
        case ValueType::Int64:
        case ValueType::Float64:
            return 8;
        case ValueType::String:
            return 8;  // at least its length field
        case ValueType::Array:
            return 12;  // at least element type + count
    }
    return 0;
}

ValueType read_value_type(Cursor& c, const std::string& path, const std::string& key) {
    const uint32_t raw = c.read<uint32_t>("value type");
    if (raw > static_cast<uint32_t>(ValueType::Float64)) {
        fail<FormatError>("{}: metadata key '{}' has unknown value type {}", path, key, raw);
    }
    return static_cast<ValueType>(raw);
}

Value read_value(Cursor& c, ValueType type, const std::string& path, const std::string& key,
                 int depth) {
    Value v;
    v.type = type;
    switch (type) {
        case ValueType::UInt8:
            v.u = c.read<uint8_t>("u8");
            break;
        case ValueType::Int8:
            v.i = c.read<int8_t>("i8");
            break;
        case ValueType::UInt16:
            v.u = c.read<uint16_t>("u16");
            break;
        case ValueType::Int16:
            v.i = c.read<int16_t>("i16");
            break;
        case ValueType::UInt32:
            v.u = c.read<uint32_t>("u32");
            break;
        case ValueType::Int32:
            v.i = c.read<int32_t>("i32");
            break;
        case ValueType::UInt64:
            v.u = c.read<uint64_t>("u64");
            break;
        case ValueType::Int64:
            v.i = c.read<int64_t>("i64");
            break;
        case ValueType::Float32:
            v.f = c.read<float>("f32");
            break;
        case ValueType::Float64:
            v.f = c.read<double>("f64");
            break;
        case ValueType::Bool: {
            const uint8_t b = c.read<uint8_t>("bool");
            if (b > 1) fail<FormatError>("{}: metadata key '{}' has bool value {}", path, key, b);
            v.u = b;
            break;
        }
        case ValueType::String:
            v.s = c.read_string("string value");
            break;
        case ValueType::Array: {
            if (depth >= kMaxArrayDepth) {
                fail<FormatError>("{}: metadata key '{}' nests arrays too deeply", path, key);
            }
            v.elem_type = read_value_type(c, path, key);
            const uint64_t count = c.read<uint64_t>("array length");
            // Every element takes at least scalar_size bytes: reject counts the file can't hold
            // before reserving memory for them.
            if (count > c.remaining() / scalar_size(v.elem_type)) {
                fail<FormatError>(
                    "{}: metadata key '{}' claims {} array elements, more than the "
                    "file can hold",
                    path, key, count);
            }
            v.array.reserve(static_cast<size_t>(count));
            for (uint64_t i = 0; i < count; ++i) {
                v.array.push_back(read_value(c, v.elem_type, path, key, depth + 1));
            }
            break;
        }
    }
    return v;
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
    return __builtin_mul_overflow(a, b, out);
}

}  // namespace

std::string_view value_type_name(ValueType t) {
    static constexpr std::string_view kNames[] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "array", "u64", "i64", "f64"};
    const auto i = static_cast<size_t>(t);
    return i < std::size(kNames) ? kNames[i] : "?";
}

bool Value::is_integer() const {
    switch (type) {
        case ValueType::UInt8:
        case ValueType::Int8:
        case ValueType::UInt16:
        case ValueType::Int16:
        case ValueType::UInt32:
        case ValueType::Int32:
        case ValueType::UInt64:
        case ValueType::Int64:
            return true;
        default:
            return false;
    }
}

std::optional<int64_t> Value::as_int() const {
    switch (type) {
        case ValueType::Int8:
        case ValueType::Int16:
        case ValueType::Int32:
        case ValueType::Int64:
            return i;
        case ValueType::UInt8:
        case ValueType::UInt16:
        case ValueType::UInt32:
        case ValueType::UInt64:
        case ValueType::Bool:
            if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
            return static_cast<int64_t>(u);
        default:
            return std::nullopt;
    }
}

std::optional<double> Value::as_double() const {
    if (is_float()) return f;
    if (auto v = as_int()) return static_cast<double>(*v);
    return std::nullopt;
}

int64_t TensorInfo::n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

struct File::Mapping {
    void* addr = nullptr;
    size_t size = 0;
    ~Mapping() {
        if (addr != nullptr) munmap(addr, size);
    }
};

File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

File File::open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open model file '{}': {}", path, std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        fail("'{}' is not a regular file", path);
    }
    File file;
    file.path_ = path;
    file.mapping_ = std::make_unique<Mapping>();
    file.size_ = static_cast<size_t>(st.st_size);
    if (file.size_ > 0) {
        void* addr = mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (addr == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            fail("cannot map '{}': {}", path, std::strerror(err));
        }
        file.mapping_->addr = addr;
        file.mapping_->size = file.size_;
        file.data_ = static_cast<const uint8_t*>(addr);
    }
    ::close(fd);
    file.parse_all();
    return file;
}

File File::parse(const uint8_t* data, size_t size, std::string name) {
    File file;
    file.path_ = std::move(name);
    file.data_ = data;
    file.size_ = size;
    file.parse_all();
    return file;
}

void File::parse_all() {
    Cursor c(data_, size_, path_);
    const uint32_t magic = c.read<uint32_t>("magic");
    if (magic != 0x46554747u) {  // "GGUF" little-endian
        fail<FormatError>("{}: not a GGUF file (bad magic)", path_);
    }
    version_ = c.read<uint32_t>("version");
    if (version_ != 2 && version_ != 3) {
        fail<FormatError>("{}: unsupported GGUF version {} (need 2 or 3)", path_, version_);
    }
    const uint64_t n_tensors = c.read<uint64_t>("tensor count");
    const uint64_t n_kv = c.read<uint64_t>("metadata count");
    // Each key/value takes >= 12 bytes and each tensor info >= 28: bound counts by the file.
    if (n_kv > c.remaining() / 12)
        fail<FormatError>("{}: metadata count {} exceeds file", path_, n_kv);

    for (uint64_t k = 0; k < n_kv; ++k) {
        std::string key = c.read_string("metadata key");
        const ValueType type = read_value_type(c, path_, key);
        Value v = read_value(c, type, path_, key, 0);
        if (!metadata_.emplace(key, std::move(v)).second) {
            fail<FormatError>("{}: duplicate metadata key '{}'", path_, key);
        }
    }
    if (const Value* a = find("general.alignment")) {
        const auto al = a->as_int();
        if (!al || *al <= 0 || *al > (1 << 20) || (*al & (*al - 1)) != 0) {
            fail<FormatError>("{}: general.alignment must be a power of two, got {}", path_,
                              describe(*a));
        }
        alignment_ = static_cast<uint32_t>(*al);
    }

    if (n_tensors > c.remaining() / 28) {
        fail<FormatError>("{}: tensor count {} exceeds file", path_, n_tensors);
    }
    tensors_.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t t = 0; t < n_tensors; ++t) {
        TensorInfo info;
        info.name = c.read_string("tensor name");
        const uint32_t n_dims = c.read<uint32_t>("tensor rank");
        if (n_dims == 0 || n_dims > kMaxDims) {
            fail<FormatError>("{}: tensor '{}' has rank {} (1..{} allowed)", path_, info.name,
                              n_dims, kMaxDims);
        }
        uint64_t n_elements = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t dim = c.read<uint64_t>("tensor dimension");
            if (dim == 0 || dim > (uint64_t{1} << 40) ||
                mul_overflows(n_elements, dim, &n_elements)) {
                fail<FormatError>("{}: tensor '{}' has invalid dimension {}", path_, info.name,
                                  dim);
            }
            info.shape.push_back(static_cast<int64_t>(dim));
        }
        const uint32_t type_id = c.read<uint32_t>("tensor type");
        const auto dt = dtype_info(type_id);
        if (!dt)
            fail<FormatError>("{}: tensor '{}' has unknown type id {}", path_, info.name, type_id);
        info.type = static_cast<DType>(type_id);
        if (info.shape[0] % dt->block_size != 0) {
            fail<FormatError>(
                "{}: tensor '{}' row length {} is not a multiple of {}'s block size {}", path_,
                info.name, info.shape[0], dt->name, dt->block_size);
        }
        uint64_t nbytes = 0;
        if (mul_overflows(n_elements / dt->block_size, dt->type_size, &nbytes)) {
            fail<FormatError>("{}: tensor '{}' is too large", path_, info.name);
        }
        info.nbytes = static_cast<size_t>(nbytes);
        info.offset = c.read<uint64_t>("tensor offset");
        if (info.offset % alignment_ != 0) {
            fail<FormatError>("{}: tensor '{}' offset {} is not aligned to {}", path_, info.name,
                              info.offset, alignment_);
        }
        if (!tensor_index_.emplace(info.name, tensors_.size()).second) {
            fail<FormatError>("{}: duplicate tensor '{}'", path_, info.name);
        }
        tensors_.push_back(std::move(info));
    }

    const uint64_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
    for (TensorInfo& info : tensors_) {
        uint64_t end = 0;
        if (__builtin_add_overflow(data_start, info.offset, &end) ||
            __builtin_add_overflow(end, info.nbytes, &end) || end > size_) {
            fail<FormatError>(
                "{}: tensor '{}' data [{}, +{}) lies outside the file ({} bytes): "
                "truncated file?",
                path_, info.name, data_start + info.offset, info.nbytes, size_);
        }
        info.data = data_ + data_start + info.offset;
    }
}

const Value* File::find(std::string_view key) const {
    auto it = metadata_.find(std::string(key));
    return it == metadata_.end() ? nullptr : &it->second;
}

std::optional<int64_t> File::get_int(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    auto i = v->as_int();
    if (!i)
        fail<FormatError>("{}: metadata '{}' should be an integer, is {}", path_, key,
                          describe(*v));
    return i;
}

std::optional<double> File::get_float(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    auto d = v->as_double();
    if (!d)
        fail<FormatError>("{}: metadata '{}' should be a number, is {}", path_, key, describe(*v));
    return d;
}

std::optional<std::string> File::get_string(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->type != ValueType::String) {
        fail<FormatError>("{}: metadata '{}' should be a string, is {}", path_, key, describe(*v));
    }
    return v->s;
}

std::optional<bool> File::get_bool(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->type == ValueType::Bool) return v->u != 0;
    if (auto i = v->as_int()) return *i != 0;
    fail<FormatError>("{}: metadata '{}' should be a bool, is {}", path_, key, describe(*v));
}

namespace {
template <class T, class Convert>
std::optional<std::vector<T>> array_of(const File& f, std::string_view key, const char* what,
                                       Convert convert) {
    const Value* v = f.find(key);
    if (v == nullptr) return std::nullopt;
    if (v->type != ValueType::Array) {
        fail<FormatError>("{}: metadata '{}' should be an array of {}", f.path(), key, what);
    }
    std::vector<T> out;
    out.reserve(v->array.size());
    for (const Value& e : v->array) {
        auto x = convert(e);
        if (!x)
            fail<FormatError>("{}: metadata '{}' should be an array of {}", f.path(), key, what);
        out.push_back(std::move(*x));
    }
    return out;
}
}  // namespace

std::optional<std::vector<std::string>> File::get_string_array(std::string_view key) const {
    return array_of<std::string>(*this, key, "strings", [](const Value& e) {
        return e.type == ValueType::String ? std::optional<std::string>(e.s) : std::nullopt;
    });
}

std::optional<std::vector<int64_t>> File::get_int_array(std::string_view key) const {
    return array_of<int64_t>(*this, key, "integers", [](const Value& e) { return e.as_int(); });
}

std::optional<std::vector<double>> File::get_float_array(std::string_view key) const {
    return array_of<double>(*this, key, "numbers", [](const Value& e) { return e.as_double(); });
}

int64_t File::require_int(std::string_view key) const {
    auto v = get_int(key);
    if (!v) fail<FormatError>("{}: missing metadata key '{}'", path_, key);
    return *v;
}

std::string File::require_string(std::string_view key) const {
    auto v = get_string(key);
    if (!v) fail<FormatError>("{}: missing metadata key '{}'", path_, key);
    return *v;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& File::tensor(std::string_view name) const {
    const TensorInfo* t = find_tensor(name);
    if (t == nullptr) fail<FormatError>("{}: missing tensor '{}'", path_, name);
    return *t;
}

std::string describe(const Value& v) {
    switch (v.type) {
        case ValueType::String:
            return v.s.size() > 60
                       ? fmt::format("\"{}...\" ({} bytes)", v.s.substr(0, 60), v.s.size())
                       : fmt::format("\"{}\"", v.s);
        case ValueType::Array:
            return fmt::format("[{} x {}]", v.array.size(), value_type_name(v.elem_type));
        case ValueType::Bool:
            return v.u ? "true" : "false";
        case ValueType::Float32:
        case ValueType::Float64:
            return fmt::format("{}", v.f);
        default:
            if (v.type == ValueType::UInt64 || v.type == ValueType::UInt32 ||
                v.type == ValueType::UInt16 || v.type == ValueType::UInt8) {
                return fmt::format("{}", v.u);
            }
            return fmt::format("{}", v.i);
    }
}

}  // namespace vela::gguf
