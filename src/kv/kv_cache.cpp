#include "kv/kv_cache.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "kv/kv_dtype.h"

namespace vela {
namespace {

// Storage is aligned for 64-byte vector loads of whole rows.
constexpr size_t kAlign = 64;

int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

void check_config(const KvCacheConfig& c) {
    auto positive = [](int64_t v, const char* name) {
        if (v < 1) fail<InvalidArgument>("KV cache {} must be >= 1, got {}", name, v);
    };
    positive(c.n_layers, "n_layers");
    positive(c.n_kv_heads, "n_kv_heads");
    positive(c.head_dim, "head_dim");
    positive(c.block_size, "block_size");
    positive(c.num_blocks, "num_blocks");
}

}  // namespace

void KvCache::AlignedFree::operator()(std::byte* p) const {
    std::free(p);
}

KvCache::KvCache(const KvCacheConfig& config, PrefixCache::HashFn hash)
    : config_((check_config(config), config)),
      elem_size_(kv_element_size(config.dtype)),
      pool_(config.num_blocks) {
    if (config_.prefix_caching) prefix_ = std::make_unique<PrefixCache>(config_.block_size, hash);
    const size_t bytes = block_bytes() * static_cast<size_t>(config_.num_blocks);
    const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    storage_.reserve(static_cast<size_t>(2 * config_.n_layers));
    for (int64_t i = 0; i < 2 * config_.n_layers; ++i) {
        auto* p = static_cast<std::byte*>(std::aligned_alloc(kAlign, rounded));
        if (p == nullptr) fail<ResourceExhausted>("cannot allocate {} bytes of KV cache", rounded);
        // Zeroed so that reading a never-written slot gives 0, not garbage (or a NaN pattern).
        std::memset(p, 0, rounded);
        storage_.emplace_back(p);
    }
}

KvCache::~KvCache() = default;

size_t KvCache::block_bytes() const {
    return static_cast<size_t>(config_.n_kv_heads * config_.block_size * config_.head_dim) *
           elem_size_;
}

std::byte* KvCache::block_ptr(int64_t layer, bool value, int32_t block) const {
    return storage_[static_cast<size_t>(2 * layer + (value ? 1 : 0))].get() +
           block_bytes() * static_cast<size_t>(block);
}

KvLayerView KvCache::layer(int64_t layer) const {
    if (layer < 0 || layer >= config_.n_layers) {
        fail<InvalidArgument>("KV layer {} out of range [0, {})", layer, config_.n_layers);
    }
    return KvLayerView{block_ptr(layer, false, 0), block_ptr(layer, true, 0), config_.dtype,
                       config_.n_kv_heads,         config_.head_dim,          config_.block_size};
}

void KvCache::add_sequence(SeqId id) {
    if (has_sequence(id) || is_swapped(id)) {
        fail<InvalidArgument>("KV sequence {} already exists", id);
    }
    tables_.emplace(id, BlockTable{});
}

const BlockTable& KvCache::table(SeqId id) const {
    auto it = tables_.find(id);
    if (it == tables_.end()) fail<InvalidArgument>("unknown KV sequence {}", id);
    return it->second;
}

BlockTable& KvCache::mutable_table(SeqId id) {
    auto it = tables_.find(id);
    if (it == tables_.end()) fail<InvalidArgument>("unknown KV sequence {}", id);
    return it->second;
}

void KvCache::fork(SeqId src, SeqId dst) {
    const BlockTable& from = table(src);
    if (has_sequence(dst) || is_swapped(dst)) {
        fail<InvalidArgument>("KV sequence {} already exists", dst);
    }
    for (int32_t b : from.blocks) retain_block(b);
    BlockTable copy = from;  // copied before emplace may rehash and move `from`
    tables_.emplace(dst, std::move(copy));
    if (auto it = chains_.find(src); it != chains_.end()) {
        const CachedChain chain = it->second;
        chains_[dst] = chain;
    }
}

void KvCache::truncate(SeqId id, int64_t n_tokens) {
    BlockTable& t = mutable_table(id);
    if (n_tokens < 0 || n_tokens > t.n_tokens) {
        fail<InvalidArgument>("cannot truncate KV sequence {} of {} tokens to {}", id, t.n_tokens,
                              n_tokens);
    }
    const auto keep = static_cast<size_t>(ceil_div(n_tokens, config_.block_size));
    std::vector<int32_t> dropped(t.blocks.begin() + static_cast<long>(keep), t.blocks.end());
    t.blocks.resize(keep);
    t.n_tokens = n_tokens;
    release_all(dropped);
    // The registered chain may end past the cut; re-registering walks it again from the start
    // (cheap: existing entries are found, not recomputed).
    if (auto it = chains_.find(id);
        it != chains_.end() && it->second.n_blocks * config_.block_size > n_tokens) {
        chains_.erase(it);
    }
}

void KvCache::free(SeqId id) {
    if (swapped_.erase(id) > 0) return;
    auto it = tables_.find(id);
    if (it == tables_.end()) fail<InvalidArgument>("unknown KV sequence {}", id);
    std::vector<int32_t> blocks = std::move(it->second.blocks);
    tables_.erase(it);
    chains_.erase(id);
    release_all(blocks);
}

bool KvCache::last_block_shared(const BlockTable& t) const {
    return t.n_tokens % config_.block_size != 0 && pool_.ref_count(t.blocks.back()) > 1;
}

int64_t KvCache::blocks_needed(SeqId id, int64_t n) const {
    const BlockTable& t = table(id);
    if (n < 0) fail<InvalidArgument>("cannot append {} tokens to KV sequence {}", n, id);
    if (n == 0) return 0;
    const int64_t fresh =
        ceil_div(t.n_tokens + n, config_.block_size) - static_cast<int64_t>(t.blocks.size());
    return fresh + (last_block_shared(t) ? 1 : 0);
}

void KvCache::copy_block(int32_t from, int32_t to) {
    for (int64_t l = 0; l < config_.n_layers; ++l) {
        for (bool value : {false, true}) {
            std::memcpy(block_ptr(l, value, to), block_ptr(l, value, from), block_bytes());
        }
    }
}

std::vector<int64_t> KvCache::append(SeqId id, int64_t n) {
    const int64_t needed = blocks_needed(id, n);
    if (needed > num_free_blocks()) {
        fail<ResourceExhausted>("KV sequence {} needs {} blocks for {} tokens, {} are free", id,
                                needed, n, num_free_blocks());
    }
    BlockTable& t = mutable_table(id);
    if (n > 0 && last_block_shared(t)) {
        const int32_t copy = allocate_block();
        copy_block(t.blocks.back(), copy);
        release_block(t.blocks.back());
        t.blocks.back() = copy;
    }
    const int64_t total = t.n_tokens + n;
    while (static_cast<int64_t>(t.blocks.size()) < ceil_div(total, config_.block_size)) {
        t.blocks.push_back(allocate_block());
    }
    std::vector<int64_t> slots(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        const int64_t pos = t.n_tokens + i;
        slots[i] = int64_t{t.blocks[pos / config_.block_size]} * config_.block_size +
                   pos % config_.block_size;
    }
    t.n_tokens = total;
    return slots;
}

int64_t KvCache::num_free_blocks() const {
    return pool_.num_free() + (prefix_ ? prefix_->num_evictable() : 0);
}

int32_t KvCache::allocate_block() {
    if (pool_.num_free() == 0 && prefix_ && prefix_->num_evictable() > 0) {
        pool_.unref(prefix_->evict_oldest());  // the cache's own reference was the last one
    }
    return pool_.allocate();
}

void KvCache::retain_block(int32_t b) {
    // A cached block referenced only by the cache is in the LRU; a new user takes it out.
    if (prefix_ && pool_.ref_count(b) == 1 && prefix_->contains(b)) prefix_->mark_in_use(b);
    pool_.ref(b);
}

void KvCache::release_block(int32_t b) {
    pool_.unref(b);
    if (prefix_ && pool_.ref_count(b) == 1 && prefix_->contains(b)) prefix_->mark_evictable(b);
}

void KvCache::release_all(std::vector<int32_t>& blocks) {
    // Last block first: it enters the LRU first, so a prompt's tail is evicted before its head
    // (the head is what other prompts are likely to share).
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) release_block(*it);
    blocks.clear();
}

void KvCache::write(int64_t layer, std::span<const int64_t> slots, const float* k, const float* v) {
    VELA_ASSERT(layer >= 0 && layer < config_.n_layers);
    const int64_t bs = config_.block_size, hd = config_.head_dim, nh = config_.n_kv_heads;
    visit_kv_dtype(config_.dtype, [&](auto tag) {
        using T = decltype(tag);
        for (size_t r = 0; r < slots.size(); ++r) {
            const int64_t slot = slots[r];
            VELA_ASSERT(slot >= 0 && slot < config_.num_blocks * bs);
            const auto block = static_cast<int32_t>(slot / bs);
            // Writing into a shared block would change another sequence's KV: append() must
            // have copied it.
            VELA_ASSERT(pool_.ref_count(block) == 1);
            for (bool value : {false, true}) {
                auto* dst = reinterpret_cast<T*>(block_ptr(layer, value, block));
                const float* src = (value ? v : k) + static_cast<int64_t>(r) * nh * hd;
                for (int64_t h = 0; h < nh; ++h) {
                    T* row = dst + (h * bs + slot % bs) * hd;
                    for (int64_t d = 0; d < hd; ++d) row[d] = KvElement<T>::encode(src[h * hd + d]);
                }
            }
        }
    });
}

void KvCache::read(int64_t layer, int64_t slot, int64_t kv_head, bool value, float* out) const {
    VELA_ASSERT(layer >= 0 && layer < config_.n_layers);
    VELA_ASSERT(slot >= 0 && slot < config_.num_blocks * config_.block_size);
    VELA_ASSERT(kv_head >= 0 && kv_head < config_.n_kv_heads);
    const int64_t bs = config_.block_size, hd = config_.head_dim;
    visit_kv_dtype(config_.dtype, [&](auto tag) {
        using T = decltype(tag);
        const auto* base =
            reinterpret_cast<const T*>(block_ptr(layer, value, static_cast<int32_t>(slot / bs)));
        const T* row = base + (kv_head * bs + slot % bs) * hd;
        for (int64_t d = 0; d < hd; ++d) out[d] = KvElement<T>::decode(row[d]);
    });
}

}  // namespace vela
