"""Hardware limits the schedule checks that the device presets do not carry.

CUDA (compute capability 2.0 and later, every GPU preset of tinyml): at most 1024 threads
per block, ``threadIdx.x`` and ``.y`` up to 1024, ``.z`` up to 64; a grid of up to
2^31 - 1 blocks along ``blockIdx.x`` and 65535 along ``.y`` and ``.z`` (CUDA C++
Programming Guide, "Compute Capabilities", table of technical specifications). Metal's
threadgroups (``m2-max``) also stop at 1024 threads.
"""

MAX_THREADS_PER_BLOCK = 1024
THREAD_EXTENT = {"threadIdx.x": 1024, "threadIdx.y": 1024, "threadIdx.z": 64}
GRID_EXTENT = {"blockIdx.x": 2 ** 31 - 1, "blockIdx.y": 65535, "blockIdx.z": 65535}
