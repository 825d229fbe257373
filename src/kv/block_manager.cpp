#include "kv/block_manager.h"

#include <utility>

#include "core/error.h"

namespace vela {
namespace {

int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

void check_config(const BlockManagerConfig& c) {
    if (c.block_size < 1) fail<InvalidArgument>("KV block_size must be >= 1, got {}", c.block_size);
    if (c.num_blocks < 1) fail<InvalidArgument>("KV num_blocks must be >= 1, got {}", c.num_blocks);
    if (c.local_window < 0) {
        fail<InvalidArgument>("KV local window must be >= 0, got {}", c.local_window);
    }
    if (c.local_window > 0) {
        if (c.local_num_blocks < 1) {
            fail<InvalidArgument>("KV local_num_blocks must be >= 1, got {}", c.local_num_blocks);
        }
        if (c.prefix_caching) {
            fail<InvalidArgument>(
                "prefix caching needs every token's KV; a local group keeps only a window");
        }
    }
}

}  // namespace

BlockManager::BlockManager(const BlockManagerConfig& config, PrefixCache::HashFn hash,
                           OpSink sink)
    : config_((check_config(config), config)), sink_(std::move(sink)), pool_(config.num_blocks) {
    if (config_.prefix_caching) prefix_ = std::make_unique<PrefixCache>(config_.block_size, hash);
    if (config_.local_window > 0) local_pool_ = std::make_unique<BlockPool>(config_.local_num_blocks);
}

BlockManager::~BlockManager() = default;

void BlockManager::emit(BlockOp op) {
    if (sink_) {
        sink_(op);
    } else {
        ops_.push_back(op);
    }
}

std::vector<BlockOp> BlockManager::take_ops() {
    return std::exchange(ops_, {});
}

void BlockManager::add_sequence(SeqId id) {
    if (has_sequence(id) || is_swapped(id)) {
        fail<InvalidArgument>("KV sequence {} already exists", id);
    }
    tables_.emplace(id, BlockTable{});
}

const BlockTable& BlockManager::table(SeqId id) const {
    auto it = tables_.find(id);
    if (it == tables_.end()) fail<InvalidArgument>("unknown KV sequence {}", id);
    return it->second;
}

BlockTable& BlockManager::mutable_table(SeqId id) {
    auto it = tables_.find(id);
    if (it == tables_.end()) fail<InvalidArgument>("unknown KV sequence {}", id);
    return it->second;
}

void BlockManager::fork(SeqId src, SeqId dst) {
    const BlockTable& from = table(src);
    if (has_sequence(dst) || is_swapped(dst)) {
        fail<InvalidArgument>("KV sequence {} already exists", dst);
    }
    for (int32_t b : from.blocks) retain_block(b);
    for (int32_t b : from.local) local_pool_->ref(b);
    BlockTable copy = from;  // copied before emplace may rehash and move `from`
    tables_.emplace(dst, std::move(copy));
    if (evicted(src)) evicted_.insert(dst);
    if (auto it = chains_.find(src); it != chains_.end()) {
        const CachedChain chain = it->second;
        chains_[dst] = chain;
    }
}

void BlockManager::truncate(SeqId id, int64_t n_tokens) {
    BlockTable& t = mutable_table(id);
    if (n_tokens < 0 || n_tokens > t.n_tokens) {
        fail<InvalidArgument>("cannot truncate KV sequence {} of {} tokens to {}", id, t.n_tokens,
                              n_tokens);
    }
    if (local_pool_) local_truncate(id, t, n_tokens);
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

void BlockManager::free(SeqId id) {
    if (auto sw = swapped_.find(id); sw != swapped_.end()) {
        for (int32_t slot : sw->second.host_slots) free_host_slots_.push_back(slot);
        swapped_.erase(sw);
        return;
    }
    auto it = tables_.find(id);
    if (it == tables_.end()) fail<InvalidArgument>("unknown KV sequence {}", id);
    std::vector<int32_t> blocks = std::move(it->second.blocks);
    for (int32_t b : it->second.local) local_pool_->unref(b);
    tables_.erase(it);
    chains_.erase(id);
    evicted_.erase(id);
    release_all(blocks);
}

bool BlockManager::last_block_shared(const BlockTable& t) const {
    return t.n_tokens % config_.block_size != 0 && pool_.ref_count(t.blocks.back()) > 1;
}

int64_t BlockManager::blocks_needed(SeqId id, int64_t n) const {
    const BlockTable& t = table(id);
    if (n < 0) fail<InvalidArgument>("cannot append {} tokens to KV sequence {}", n, id);
    if (n == 0) return 0;
    const int64_t fresh =
        ceil_div(t.n_tokens + n, config_.block_size) - static_cast<int64_t>(t.blocks.size());
    return fresh + (last_block_shared(t) ? 1 : 0);
}

std::vector<int64_t> BlockManager::append(SeqId id, int64_t n) {
    const int64_t needed = blocks_needed(id, n);
    if (needed > num_free_blocks()) {
        fail<ResourceExhausted>("KV sequence {} needs {} blocks for {} tokens, {} are free", id,
                                needed, n, num_free_blocks());
    }
    BlockTable& t = mutable_table(id);
    if (!local_fits(t, n)) {
        fail<ResourceExhausted>("KV sequence {}: its local layers' blocks for {} tokens are not free",
                                id, n);
    }
    if (local_pool_ && n > 0) local_append(t, n);
    if (n > 0 && last_block_shared(t)) {
        const int32_t copy = allocate_block();
        emit(BlockOp{BlockOp::Kind::Copy, t.blocks.back(), copy});
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

int64_t BlockManager::num_free_blocks() const {
    return pool_.num_free() + (prefix_ ? prefix_->num_evictable() : 0);
}

int32_t BlockManager::allocate_block() {
    if (pool_.num_free() == 0 && prefix_ && prefix_->num_evictable() > 0) {
        pool_.unref(prefix_->evict_oldest());  // the cache's own reference was the last one
    }
    return pool_.allocate();
}

void BlockManager::retain_block(int32_t b) {
    // A cached block referenced only by the cache is in the LRU; a new user takes it out.
    if (prefix_ && pool_.ref_count(b) == 1 && prefix_->contains(b)) prefix_->mark_in_use(b);
    pool_.ref(b);
}

void BlockManager::release_block(int32_t b) {
    pool_.unref(b);
    if (prefix_ && pool_.ref_count(b) == 1 && prefix_->contains(b)) prefix_->mark_evictable(b);
}

void BlockManager::release_all(std::vector<int32_t>& blocks) {
    // Last block first: it enters the LRU first, so a prompt's tail is evicted before its head
    // (the head is what other prompts are likely to share).
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) release_block(*it);
    blocks.clear();
}

}  // namespace vela
