// Adam (the in-house baseline for the SET-Adam kernels), one step over all tensors of a parameter
// group in one launch over the same chunk table.  Reads g, m, v, p and writes m, v, p: 28 B/param
// in float32, the floor for Adam.
//
//   g_eff = (maximize ? -g : g) + wd * p            (l2 weight decay only)
//   m = beta1 * m + (1 - beta1) * g_eff
//   v = beta2 * v + (1 - beta2) * g_eff^2
//   p = p * (1 - lr * wd)                            (decoupled weight decay only)
//   p = p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
// The denominator is written as torch.optim.Adam writes it, sqrt(v) / sqrt(bc2) + eps, which
// cannot overflow for finite v.
#include "multi_tensor.cuh"

__device__ __forceinline__ void adam_elem(float g, float& p, float& m, float& v, float beta1,
                                          float omb1, float beta2, float omb2, float step_size,
                                          float bc2_sqrt, float eps, float wd, int l2, float decay,
                                          int maximize) {
    const float ge = effective_grad(g, p, maximize, l2, wd);
    m = beta1 * m + omb1 * ge;
    v = beta2 * v + omb2 * (ge * ge);
    const float denom = sqrtf(v) / bc2_sqrt + eps;
    const float pd = __fmul_rn(p, decay);
    p = pd - step_size * (m / denom);
}

template <typename P>
__device__ void adam_step(const TensorDesc* __restrict__ tensors,
                          const ChunkDesc* __restrict__ chunks, int n_chunks,
                          unsigned int* __restrict__ counter, float beta1, float omb1,
                          float beta2, float omb2, float step_size, float bc2_sqrt, float eps,
                          float wd, int l2, float decay, int maximize) {
    for (;;) {
        const int c = next_chunk(counter, n_chunks);
        if (c >= n_chunks) {
            break;
        }
        const ChunkDesc ch = chunks[c];
        const TensorDesc td = tensors[ch.tensor];
        int scalar_from = 0;
        if (td.vec) {
            const int nvec = ch.len >> 2;
#pragma unroll 2
            for (int k = threadIdx.x; k < nvec; k += SETADAM_BLOCK) {
                const long long i = ch.start + 4LL * k;
                const float4 g = Access<P>::load4(td.g, i);
                float4 m = load4f(td.m, i);
                float4 v = load4f(td.v, i);
                float4 p = Access<P>::load4(td.p, i);
                adam_elem(g.x, p.x, m.x, v.x, beta1, omb1, beta2, omb2, step_size, bc2_sqrt, eps, wd,
                          l2, decay, maximize);
                adam_elem(g.y, p.y, m.y, v.y, beta1, omb1, beta2, omb2, step_size, bc2_sqrt, eps, wd,
                          l2, decay, maximize);
                adam_elem(g.z, p.z, m.z, v.z, beta1, omb1, beta2, omb2, step_size, bc2_sqrt, eps, wd,
                          l2, decay, maximize);
                adam_elem(g.w, p.w, m.w, v.w, beta1, omb1, beta2, omb2, step_size, bc2_sqrt, eps, wd,
                          l2, decay, maximize);
                store4f(td.m, i, m);
                store4f(td.v, i, v);
                Access<P>::store4(td.p, i, p);
            }
            scalar_from = nvec << 2;
        }
        for (int j = scalar_from + threadIdx.x; j < ch.len; j += SETADAM_BLOCK) {
            const long long i = ch.start + j;
            const float g = Access<P>::load(td.g, i);
            float m = loadf(td.m, i);
            float v = loadf(td.v, i);
            float p = Access<P>::load(td.p, i);
            adam_elem(g, p, m, v, beta1, omb1, beta2, omb2, step_size, bc2_sqrt, eps, wd, l2, decay,
                      maximize);
            storef(td.m, i, m);
            storef(td.v, i, v);
            Access<P>::store(td.p, i, p);
        }
    }
}

extern "C" {

__global__ void __launch_bounds__(SETADAM_BLOCK)
adam_step_f32(const TensorDesc* tensors, const ChunkDesc* chunks, int n_chunks,
              unsigned int* counter, float beta1, float omb1, float beta2, float omb2,
              float step_size, float bc2_sqrt, float eps, float wd, int l2, float decay,
              int maximize) {
    adam_step<float>(tensors, chunks, n_chunks, counter, beta1, omb1, beta2, omb2, step_size,
                     bc2_sqrt, eps, wd, l2, decay, maximize);
}

__global__ void __launch_bounds__(SETADAM_BLOCK)
adam_step_bf16(const TensorDesc* tensors, const ChunkDesc* chunks, int n_chunks,
               unsigned int* counter, float beta1, float omb1, float beta2, float omb2,
               float step_size, float bc2_sqrt, float eps, float wd, int l2, float decay,
               int maximize) {
    adam_step<bf16_t>(tensors, chunks, n_chunks, counter, beta1, omb1, beta2, omb2, step_size,
                      bc2_sqrt, eps, wd, l2, decay, maximize);
}

}  // extern "C"
