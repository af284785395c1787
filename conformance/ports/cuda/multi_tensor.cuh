// Shared pieces of the multi-tensor optimizer kernels (SET-Adam and Adam).
//
// Compiled twice: by NVRTC at run time (through CuPy's RawModule; the Python launcher pastes this
// header into each .cu source in place of its #include line) and by nvcc in the compile check.
// It therefore includes no CUDA header: bfloat16 is handled through its 16 raw bits.
//
// The host describes one parameter group by two device tables, rebuilt only when the tensor list
// changes:
//   TensorDesc[n_tensors]: the four data pointers of a tensor (param, grad, exp_avg, exp_avg_sq),
//                          its element count, its layer index and whether 4-wide vector access is
//                          aligned for all four pointers;
//   ChunkDesc[n_chunks]:   a slice [start, start + len) of one tensor, CHUNK elements at most.
// Chunks are ordered by layer, so the chunks of layer l are the contiguous index range
// [layer_chunk_off[l], layer_chunk_off[l + 1]).  Every chunk starts at a multiple of CHUNK inside
// its tensor, hence at a multiple of 4 elements: aligned for 16-byte access when the tensor is.
#pragma once

#ifndef SETADAM_BLOCK
#define SETADAM_BLOCK 256
#endif

struct TensorDesc {
    unsigned long long p;  // param (float or bfloat16)
    unsigned long long g;  // grad (same dtype as param)
    unsigned long long m;  // exp_avg (float)
    unsigned long long v;  // exp_avg_sq (float, unscaled)
    long long numel;
    int layer;
    int vec;  // 1: p, g aligned to 4 elements and m, v to 16 bytes
};

struct ChunkDesc {
    long long start;
    int tensor;
    int len;
};

// bfloat16 as raw bits.
struct bf16_t {
    unsigned short bits;
};

__device__ __forceinline__ float bf16_bits_to_float(unsigned int bits) {
    return __uint_as_float(bits << 16);
}

// Round to nearest even; NaN stays a (quiet) NaN with its sign.
__device__ __forceinline__ unsigned short float_to_bf16_bits(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (unsigned short)(((u >> 16) & 0x8000u) | 0x7fc0u);
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

// ---- loads and stores of the param / grad type -------------------------------------------------

template <typename P>
struct Access;

template <>
struct Access<float> {
    static __device__ __forceinline__ float load(unsigned long long base, long long i) {
        return reinterpret_cast<const float*>(base)[i];
    }
    static __device__ __forceinline__ void store(unsigned long long base, long long i, float x) {
        reinterpret_cast<float*>(base)[i] = x;
    }
    // i is a multiple of 4
    static __device__ __forceinline__ float4 load4(unsigned long long base, long long i) {
        return *reinterpret_cast<const float4*>(reinterpret_cast<const float*>(base) + i);
    }
    static __device__ __forceinline__ void store4(unsigned long long base, long long i, float4 x) {
        *reinterpret_cast<float4*>(reinterpret_cast<float*>(base) + i) = x;
    }
};

template <>
struct Access<bf16_t> {
    static __device__ __forceinline__ float load(unsigned long long base, long long i) {
        return bf16_bits_to_float(reinterpret_cast<const unsigned short*>(base)[i]);
    }
    static __device__ __forceinline__ void store(unsigned long long base, long long i, float x) {
        reinterpret_cast<unsigned short*>(base)[i] = float_to_bf16_bits(x);
    }
    static __device__ __forceinline__ float4 load4(unsigned long long base, long long i) {
        const uint2 u = *reinterpret_cast<const uint2*>(reinterpret_cast<const unsigned short*>(base) + i);
        return make_float4(bf16_bits_to_float(u.x & 0xffffu), bf16_bits_to_float(u.x >> 16),
                           bf16_bits_to_float(u.y & 0xffffu), bf16_bits_to_float(u.y >> 16));
    }
    static __device__ __forceinline__ void store4(unsigned long long base, long long i, float4 x) {
        uint2 u;
        u.x = (unsigned int)float_to_bf16_bits(x.x) | ((unsigned int)float_to_bf16_bits(x.y) << 16);
        u.y = (unsigned int)float_to_bf16_bits(x.z) | ((unsigned int)float_to_bf16_bits(x.w) << 16);
        *reinterpret_cast<uint2*>(reinterpret_cast<unsigned short*>(base) + i) = u;
    }
};

__device__ __forceinline__ float4 load4f(unsigned long long base, long long i) {
    return Access<float>::load4(base, i);
}
__device__ __forceinline__ void store4f(unsigned long long base, long long i, float4 x) {
    Access<float>::store4(base, i, x);
}
__device__ __forceinline__ float loadf(unsigned long long base, long long i) {
    return Access<float>::load(base, i);
}
__device__ __forceinline__ void storef(unsigned long long base, long long i, float x) {
    Access<float>::store(base, i, x);
}

// The gradient the moments see: maximize negates first, then l2 weight decay adds wd * theta
// (the order of torch.optim).  One function for every pass, so that every pass computes the same
// bits.
__device__ __forceinline__ float effective_grad(float g, float p, int maximize, int l2, float wd) {
    float ge = maximize ? -g : g;
    if (l2) {
        ge = ge + wd * p;
    }
    return ge;
}

// ---- dynamic chunk scheduling ------------------------------------------------------------------
// Blocks take chunks from a device counter, so that chunks of unequal size (biases next to
// embedding slices) balance across the grid.  Which block computes a chunk does not change what
// it computes: each chunk's result depends on the chunk alone, so the scheduling cannot make the
// result nondeterministic.  Every block stops after exactly one grab past the end, so one launch
// hands out exactly n_chunks + gridDim.x tickets; the block that draws the last ticket resets the
// counter to 0 for the next launch (no other block touches it after that).

__device__ __forceinline__ int next_chunk(unsigned int* counter, int n_chunks) {
    __shared__ int ticket;
    __syncthreads();  // every thread has read the previous ticket
    if (threadIdx.x == 0) {
        const unsigned int t = atomicAdd(counter, 1u);
        if (t == (unsigned int)n_chunks + gridDim.x - 1u) {
            atomicExch(counter, 0u);
        }
        ticket = (int)t;
    }
    __syncthreads();
    return ticket;
}

// ---- deterministic block reductions --------------------------------------------------------------
// A fixed tree: xor-shuffle inside each warp, then warp 0 over the per-warp results.  The result
// depends only on the block size and on which thread holds which value, never on timing.

__device__ __forceinline__ double warp_sum(double x) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        x += __shfl_xor_sync(0xffffffffu, x, off);
    }
    return x;
}

__device__ __forceinline__ float warp_min(float x) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        x = fminf(x, __shfl_xor_sync(0xffffffffu, x, off));
    }
    return x;
}

// Reduces (s1, s2, mn) over the block; the result is valid in thread 0.  Contains __syncthreads():
// every thread of the block must call it.
__device__ __forceinline__ void block_reduce_stats(double& s1, double& s2, float& mn) {
    constexpr int kWarps = SETADAM_BLOCK / 32;
    __shared__ double sh1[kWarps];
    __shared__ double sh2[kWarps];
    __shared__ float shm[kWarps];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    s1 = warp_sum(s1);
    s2 = warp_sum(s2);
    mn = warp_min(mn);
    if (lane == 0) {
        sh1[warp] = s1;
        sh2[warp] = s2;
        shm[warp] = mn;
    }
    __syncthreads();
    if (warp == 0) {
        s1 = lane < kWarps ? sh1[lane] : 0.0;
        s2 = lane < kWarps ? sh2[lane] : 0.0;
        mn = lane < kWarps ? shm[lane] : __int_as_float(0x7f800000);
        s1 = warp_sum(s1);
        s2 = warp_sum(s2);
        mn = warp_min(mn);
    }
    __syncthreads();  // the shared arrays may be reused by the next call
}
