#include "attention/reference_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace vela {

std::vector<double> reference_attention(const ReferenceAttentionArgs& a) {
    const int64_t hd = a.head_dim, group = a.n_heads / a.n_kv_heads;
    VELA_ASSERT(a.n_heads % a.n_kv_heads == 0 && a.kv_len >= a.q_len);
    VELA_ASSERT(static_cast<int64_t>(a.q.size()) == a.q_len * a.n_heads * hd);
    VELA_ASSERT(static_cast<int64_t>(a.k.size()) == a.kv_len * a.n_kv_heads * hd);
    VELA_ASSERT(a.v.size() == a.k.size());
    std::vector<double> out(static_cast<size_t>(a.q_len * a.n_heads * hd), 0.0);
    std::vector<double> w(static_cast<size_t>(a.kv_len));
    for (int64_t i = 0; i < a.q_len; ++i) {
        const int64_t pos = a.kv_len - a.q_len + i;
        const int64_t first = a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1) : 0;
        for (int64_t h = 0; h < a.n_heads; ++h) {
            const int64_t kh = h / group;
            const float* q = &a.q[(i * a.n_heads + h) * hd];
            double max = -std::numeric_limits<double>::infinity();
            for (int64_t j = first; j <= pos; ++j) {
                const float* k = &a.k[(j * a.n_kv_heads + kh) * hd];
                double s = 0.0;
                for (int64_t d = 0; d < hd; ++d) s += double{q[d]} * double{k[d]};
                w[j] = s * a.scale;
                max = std::max(max, w[j]);
            }
            double sum = 0.0;
            for (int64_t j = first; j <= pos; ++j) sum += (w[j] = std::exp(w[j] - max));
            double* o = &out[(i * a.n_heads + h) * hd];
            for (int64_t j = first; j <= pos; ++j) {
                const float* v = &a.v[(j * a.n_kv_heads + kh) * hd];
                for (int64_t d = 0; d < hd; ++d) o[d] += w[j] / sum * double{v[d]};
            }
        }
    }
    return out;
}

}  // namespace vela
