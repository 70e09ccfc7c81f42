"""Settings shared by every kernel, read from here and nowhere else."""

import os

#: Rows per tile in the fused kernels.  Constant, so a tile's arithmetic (and
#: so the result) never depends on the number of rows or threads.  Not a
#: power of two: the products read one vector from each of many consecutive
#: tile rows, and rows 2 KiB apart (256 float64) would all fall into the same
#: few sets of the L1 cache and evict each other.  A multiple of 16, so
#: every vector width (up to 16 float32) divides it.
TILE_ROWS = 272

#: Rows per tile of the Numba kernels for a narrow network, one whose widest
#: layer (inputs included) has at most NARROW_WIDTH units.  Numba's driver
#: calls a tile's kernels at their addresses, about a dozen calls a tile,
#: each passing its arrays as tens of words; a narrow network does so little
#: per row that those calls take a sizeable share of its time, and tiles four
#: times as long make a quarter as many.  Not for wider networks: their tiles
#: would no longer stay in the L1 cache.  The C kernels inline their tile
#: functions and keep TILE_ROWS.  Chosen from the shape alone, so a result
#: never depends on the number of rows or threads.
NARROW_WIDTH = 4
NARROW_TILE_ROWS = 4 * TILE_ROWS

#: Most rows per block in the parallel kernels: blocks run on separate threads
#: and their partial gradients are added in block order.  A multiple of
#: TILE_ROWS; a batch of at most one block runs serially.
BLOCK_ROWS = 32 * TILE_ROWS

#: A batch of more than BLOCK_ROWS rows is cut into the blocks of BLOCK_ROWS it
#: needs, that count rounded up to a multiple of this (fewer when whole tiles
#: take every row in fewer), of equal whole tiles but the last, so that two or
#: four threads get equal shares: in seven blocks of BLOCK_ROWS, 60,000 rows
#: would leave four of them to one of two threads.  Blocks depend on the
#: batch's rows only, so results are bitwise identical for any thread count
#: (fastnet.backends.block_rows).
BLOCK_COUNT_MULTIPLE = 4

#: A batch of at most BLOCK_ROWS rows is one block, run serially, unless
#: its work (rows times parameters, about a third of its multiply-adds) is at
#: least SPLIT_WORK: then it is cut into up to SPLIT_BLOCKS blocks of equal
#: length (a multiple of SPLIT_ROUNDING rows, at least SPLIT_MIN_ROWS; the
#: last may be shorter), which run on separate threads as above.  So a
#: mini-batch of a wide network uses more than one core, and the blocks still depend on the
#: batch's rows and the network's shape only (fastnet.backends.block_rows).
#: Smaller batches stay whole: a parallel call costs microseconds, and each
#: block adds a partial gradient to sum.
SPLIT_WORK = 2**22
SPLIT_BLOCKS = 4
SPLIT_MIN_ROWS = 64
SPLIT_ROUNDING = 16

#: Inputs per pass of the matrix products' register-blocked loops: a pass
#: reads this many input rows of a tile (a few KB, kept in the L1 cache while
#: every block of outputs runs over them) before the next.  Each sum still
#: runs over the inputs in order, so this changes the speed, never a result.
PRODUCT_CHUNK = 64

#: Bytes of each row's inputs that one pass of a tile's transposition (rows
#: made feature-major) reads: a cache line, so each line of X is read once.
#: Changes the speed, never a result.
INPUT_PASS_BYTES = 64

#: Fewest inputs (columns) for which the Numba products use their register
#: blocks: each block loads and stores its sums once per chunk, which pays
#: only when enough columns are added in between.
PRODUCT_MIN_COLUMNS = 16

#: Rows per call of a backend's forward in Network.forward/predict: their
#: hidden activations are held for these rows only, whatever the number of
#: rows predicted.  A whole number of blocks, so threads share it evenly.
FORWARD_CHUNK_ROWS = 16 * BLOCK_ROWS

#: Work (multiply-adds, about 3 per weight per row plus a few per parameter per
#: update) in one backend call of a training epoch: longer epochs run as
#: several calls on consecutive whole batches, so a progress bar moves (and
#: Ctrl-C is seen) within the epoch.  About 0.05-0.2 s on one core; fixed, so
#: where an epoch is cut depends on its shape only, never on timing.
EPOCH_SLICE_WORK = 2**26

#: Memory for the blocks' partial gradients in one parallel wave.  More
#: blocks per wave means fewer waves, so threads are woken less often.
PARTIAL_GRADIENT_BYTES = 16 * 2**20

#: Bytes of a cache line, to which work memory is aligned.  Each block's
#: partial gradient starts on a line of its own: threads add into their
#: blocks' partials once a tile, and two partials sharing a line would make
#: every such addition wait for the line to come back from the other core.
CACHE_LINE_BYTES = 64

#: Parameters per chunk of the work over whole parameter vectors that runs on
#: the threads chunk by chunk: the optimizer's update after a batch of more
#: than one block and, in the C kernels, the sum of a wave's partial
#: gradients (each parameter's in block order, whichever thread adds it).
#: Elementwise, so the chunks change the speed, never a result.
PARAMETER_CHUNK = 8192

#: |z| beyond this saturates the sigmoid: exp(-708) is still a normal double.
SIGMOID_CLAMP = 708.0

#: The same for float32 networks: exp(-87) is still a normal float32.
SIGMOID_CLAMP_FLOAT32 = 87.0

#: LLVM fast-math flags for the Numba kernels: none.  Numba links a copy of
#: every callee into each caller and optimises it again there, while a
#: caller compiled in this process calls the callee's own compiled copy; with
#: value-changing flags (``contract``, ``nsz`` with ``reassoc``...) the two
#: copies round differently, so a freshly compiled kernel and the same kernel
#: loaded from the cache gave results a few ulp apart.  Strict IEEE code is
#: the same whatever the copy; fused multiply-adds are written explicitly
#: (``fastnet.backends.numba_kernels._fma``) where they pay.
FASTMATH = frozenset()

#: Flags for loops that are pure reductions (sums over a tile), where
#: reassociation is what lets LLVM vectorise.  ``reassoc`` alone: a reduction
#: loop's vector order is fixed by the loop itself, which every copy shares.
FASTMATH_REDUCE = frozenset({"reassoc"})

#: On-disk caching of compiled Numba kernels.  Off with FASTNET_NUMBA_CACHE=0;
#: the cache folder follows NUMBA_CACHE_DIR (see fastnet.backends.numba_kernels).
NUMBA_CACHE = os.environ.get("FASTNET_NUMBA_CACHE", "1") != "0"

#: Numba's threading layer.  "threadsafe" (OpenMP here, from libgomp, which
#: gcc brings and the native backend shares) lets two Python threads run
#: parallel kernels at once; the default "workqueue" layer would abort the
#: process.  NUMBA_THREADING_LAYER in the environment still wins.
NUMBA_THREADING_LAYER = os.environ.get("NUMBA_THREADING_LAYER", "threadsafe")
