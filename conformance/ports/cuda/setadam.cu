// SET-Adam, one step over all tensors of a parameter group, in three launches.
//
//   1. setadam_stats_<P>: v_new = beta2 * v + (1 - beta2) * g_eff^2, written back to exp_avg_sq,
//      and per chunk the partial layer statistics sum v_new, sum v_new^2 (float64) and min v_new.
//      Reads g, v (and p with l2 weight decay), writes v: 12 B/param (16 with l2).
//   2. setadam_reduce: one block per layer sums that layer's chunk partials in a fixed order and
//      turns them into the per-layer coefficients of the update (c, sqrt(c/bc2), eps*bc2/c,
//      tau * min w).  Tiny.
//   3. setadam_update_<P>: m_new = beta1 * m + (1 - beta1) * g_eff, the embedded and translated
//      denominator from v_new, and the parameter update.  Reads g, m, v, p, writes m, p: 24 B/param.
// Total 36 B/param in float32 (40 with l2), the floor for SET-Adam: the layer statistics must be
// complete before the first parameter of the layer moves.
//
// Overflow / underflow: the statistics are accumulated in float64.  A finite float32 v is at most
// 3.4e38, so v^2 <= 1.2e77 and a sum over fewer than 2^53 entries stays below 1e93, far under the
// float64 maximum 1.8e308; the smallest positive float32 (1.4e-45) squares to 2e-90, far above the
// float64 normal minimum 2.2e-308.  So no finite float32 layer can overflow or lose its squares to
// underflow, without any rescaling.
//
// Determinism: no floating-point atomics.  Each chunk's partial comes from a fixed per-thread
// order and a fixed block tree; each layer's sum runs over its chunks in a fixed order and tree.
// The chunking depends only on the tensor sizes, so the result does not depend on the grid size
// or on the timing of blocks.
#include "multi_tensor.cuh"

// The embedded denominator, written so that no intermediate can overflow for finite v:
//   w = sqrt(c * v / bc2 + eps) = sqrt(s) * sqrt(v + eps / s),  s = c / bc2.
// (c * v / bc2 itself can exceed the float32 range when v is near 3.4e38 and bc2 is small.)
__device__ __forceinline__ float embedded(float v, float sqrt_s, float eps_s) {
    return __fmul_rn(sqrt_s, sqrtf(__fadd_rn(v, eps_s)));
}

template <typename P>
__device__ __forceinline__ void stats_elem(float g, float p, float& v, float beta2, float omb2,
                                           float wd, int l2, int maximize, double& s1, double& s2,
                                           float& mn) {
    const float ge = effective_grad(g, p, maximize, l2, wd);
    const float vn = beta2 * v + omb2 * (ge * ge);
    v = vn;
    const double dv = (double)vn;
    s1 += dv;
    s2 = fma(dv, dv, s2);
    mn = fminf(mn, vn);
}

template <typename P>
__device__ void setadam_stats(const TensorDesc* __restrict__ tensors,
                              const ChunkDesc* __restrict__ chunks, int n_chunks,
                              unsigned int* __restrict__ counter,
                              double* __restrict__ partials, float beta2, float omb2, float wd,
                              int l2, int maximize) {
    for (;;) {
        const int c = next_chunk(counter, n_chunks);
        if (c >= n_chunks) {
            break;
        }
        const ChunkDesc ch = chunks[c];
        const TensorDesc td = tensors[ch.tensor];
        double s1 = 0.0;
        double s2 = 0.0;
        float mn = __int_as_float(0x7f800000);  // +inf
        int scalar_from = 0;
        if (td.vec) {
            const int nvec = ch.len >> 2;
#pragma unroll 2
            for (int k = threadIdx.x; k < nvec; k += SETADAM_BLOCK) {
                const long long i = ch.start + 4LL * k;
                const float4 g = Access<P>::load4(td.g, i);
                float4 v = load4f(td.v, i);
                float4 p = make_float4(0.f, 0.f, 0.f, 0.f);
                if (l2) {
                    p = Access<P>::load4(td.p, i);
                }
                stats_elem<P>(g.x, p.x, v.x, beta2, omb2, wd, l2, maximize, s1, s2, mn);
                stats_elem<P>(g.y, p.y, v.y, beta2, omb2, wd, l2, maximize, s1, s2, mn);
                stats_elem<P>(g.z, p.z, v.z, beta2, omb2, wd, l2, maximize, s1, s2, mn);
                stats_elem<P>(g.w, p.w, v.w, beta2, omb2, wd, l2, maximize, s1, s2, mn);
                store4f(td.v, i, v);
            }
            scalar_from = nvec << 2;
        }
        for (int j = scalar_from + threadIdx.x; j < ch.len; j += SETADAM_BLOCK) {
            const long long i = ch.start + j;
            const float g = Access<P>::load(td.g, i);
            float v = loadf(td.v, i);
            const float p = l2 ? Access<P>::load(td.p, i) : 0.f;
            stats_elem<P>(g, p, v, beta2, omb2, wd, l2, maximize, s1, s2, mn);
            storef(td.v, i, v);
        }
        block_reduce_stats(s1, s2, mn);
        if (threadIdx.x == 0) {
            partials[c] = s1;
            partials[n_chunks + c] = s2;
            partials[2 * n_chunks + c] = (double)mn;
        }
    }
}

template <typename P>
__device__ __forceinline__ void update_elem(float g, float& p, float& m, float v, float4 cf,
                                            float beta1, float omb1, float step_size, float wd,
                                            int l2, float decay, int maximize) {
    const float ge = effective_grad(g, p, maximize, l2, wd);
    const float mn = beta1 * m + omb1 * ge;
    m = mn;
    const float w = embedded(v, cf.x, cf.y);
    const float wt = __fsub_rn(w, cf.z);  // down-translating: w - tau * min_layer w
    const float pd = __fmul_rn(p, decay);  // decoupled weight decay (decay == 1 otherwise)
    p = pd - step_size * (mn / wt);
}

template <typename P>
__device__ void setadam_update(const TensorDesc* __restrict__ tensors,
                               const ChunkDesc* __restrict__ chunks, int n_chunks,
                               unsigned int* __restrict__ counter,
                               const float4* __restrict__ coef, float beta1, float omb1,
                               float step_size, float wd, int l2, float decay, int maximize) {
    // Reverse chunk order: the chunks that pass 1 touched last may still sit in L2.
    for (;;) {
        const int r = next_chunk(counter, n_chunks);
        if (r >= n_chunks) {
            break;
        }
        const int c = n_chunks - 1 - r;
        const ChunkDesc ch = chunks[c];
        const TensorDesc td = tensors[ch.tensor];
        const float4 cf = coef[td.layer];
        int scalar_from = 0;
        if (td.vec) {
            const int nvec = ch.len >> 2;
#pragma unroll 2
            for (int k = threadIdx.x; k < nvec; k += SETADAM_BLOCK) {
                const long long i = ch.start + 4LL * k;
                const float4 g = Access<P>::load4(td.g, i);
                float4 m = load4f(td.m, i);
                const float4 v = load4f(td.v, i);
                float4 p = Access<P>::load4(td.p, i);
                update_elem<P>(g.x, p.x, m.x, v.x, cf, beta1, omb1, step_size, wd, l2, decay, maximize);
                update_elem<P>(g.y, p.y, m.y, v.y, cf, beta1, omb1, step_size, wd, l2, decay, maximize);
                update_elem<P>(g.z, p.z, m.z, v.z, cf, beta1, omb1, step_size, wd, l2, decay, maximize);
                update_elem<P>(g.w, p.w, m.w, v.w, cf, beta1, omb1, step_size, wd, l2, decay, maximize);
                store4f(td.m, i, m);
                Access<P>::store4(td.p, i, p);
            }
            scalar_from = nvec << 2;
        }
        for (int j = scalar_from + threadIdx.x; j < ch.len; j += SETADAM_BLOCK) {
            const long long i = ch.start + j;
            const float g = Access<P>::load(td.g, i);
            float m = loadf(td.m, i);
            const float v = loadf(td.v, i);
            float p = Access<P>::load(td.p, i);
            update_elem<P>(g, p, m, v, cf, beta1, omb1, step_size, wd, l2, decay, maximize);
            storef(td.m, i, m);
            Access<P>::store(td.p, i, p);
        }
    }
}

extern "C" {

__global__ void __launch_bounds__(SETADAM_BLOCK)
setadam_stats_f32(const TensorDesc* tensors, const ChunkDesc* chunks, int n_chunks,
                  unsigned int* counter, double* partials, float beta2, float omb2, float wd,
                  int l2, int maximize) {
    setadam_stats<float>(tensors, chunks, n_chunks, counter, partials, beta2, omb2, wd, l2,
                         maximize);
}

__global__ void __launch_bounds__(SETADAM_BLOCK)
setadam_stats_bf16(const TensorDesc* tensors, const ChunkDesc* chunks, int n_chunks,
                   unsigned int* counter, double* partials, float beta2, float omb2, float wd,
                   int l2, int maximize) {
    setadam_stats<bf16_t>(tensors, chunks, n_chunks, counter, partials, beta2, omb2, wd, l2,
                          maximize);
}

// One block per layer.  layer_chunk_off has n_layers + 1 entries; layer_numel holds d_l (as a
// double: exact below 2^53).  Outputs: coef[l] = (sqrt(s), eps / s, tau * w_min, c) with
// s = c / bc2, and stats[4 l .. 4 l + 3] = (c, sum v, sum v^2, min v) in float64.
__global__ void __launch_bounds__(SETADAM_BLOCK)
setadam_reduce(const double* __restrict__ partials, int n_chunks,
               const int* __restrict__ layer_chunk_off, const double* __restrict__ layer_numel,
               double bc2, double eps, float tau, float4* __restrict__ coef,
               double* __restrict__ stats) {
    const int l = blockIdx.x;
    const int lo = layer_chunk_off[l];
    const int hi = layer_chunk_off[l + 1];
    double s1 = 0.0;
    double s2 = 0.0;
    float mn = __int_as_float(0x7f800000);
    for (int c = lo + threadIdx.x; c < hi; c += SETADAM_BLOCK) {
        s1 += partials[c];
        s2 += partials[n_chunks + c];
        mn = fminf(mn, (float)partials[2 * n_chunks + c]);
    }
    block_reduce_stats(s1, s2, mn);
    if (threadIdx.x == 0) {
        const double d = layer_numel[l];
        // cos^2 of the angle between v_l and the all-one vector; an all-zero (or empty) layer has
        // no angle: c = 1 (its scaled v is 0 whatever c is).
        const double c = (s2 > 0.0) ? (s1 * s1) / (d * s2) : 1.0;
        const double s = c / bc2;
        const float sqrt_s = (float)sqrt(s);
        const float eps_s = (float)(eps / s);
        // min_l w = w(min_l v) since w is increasing in v; computed by the same float expression
        // as each element's w, so w_i - tau * w_min >= (1 - tau) * w_min > 0 holds in float too.
        const float w_min = embedded(mn, sqrt_s, eps_s);
        coef[l] = make_float4(sqrt_s, eps_s, __fmul_rn(tau, w_min), (float)c);
        stats[4 * l + 0] = c;
        stats[4 * l + 1] = s1;
        stats[4 * l + 2] = s2;
        stats[4 * l + 3] = (double)mn;
    }
}

__global__ void __launch_bounds__(SETADAM_BLOCK)
setadam_update_f32(const TensorDesc* tensors, const ChunkDesc* chunks, int n_chunks,
                   unsigned int* counter, const float4* coef, float beta1, float omb1,
                   float step_size, float wd, int l2, float decay, int maximize) {
    setadam_update<float>(tensors, chunks, n_chunks, counter, coef, beta1, omb1, step_size, wd,
                          l2, decay, maximize);
}

__global__ void __launch_bounds__(SETADAM_BLOCK)
setadam_update_bf16(const TensorDesc* tensors, const ChunkDesc* chunks, int n_chunks,
                    unsigned int* counter, const float4* coef, float beta1, float omb1,
                    float step_size, float wd, int l2, float decay, int maximize) {
    setadam_update<bf16_t>(tensors, chunks, n_chunks, counter, coef, beta1, omb1, step_size, wd,
                           l2, decay, maximize);
}

}  // extern "C"
