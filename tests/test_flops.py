import flax.linen as nn
import jax
import jax.numpy as jnp

from training.flops import matmul_flops


def test_batched_matmul_and_strided_grouped_conv_by_hand():
    a, b = jnp.ones((3, 4, 5)), jnp.ones((3, 5, 6))
    assert matmul_flops(lambda a, b: jnp.einsum("bij,bjk->bik", a, b), a, b) == 2 * 3 * 4 * 5 * 6
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 2, 16))  # 2 groups of 2 input channels

    def conv(x, w):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=dims, feature_group_count=2)

    assert matmul_flops(conv, x, w) == 2 * (2 * 4 * 4 * 16) * (3 * 3 * 2)


def test_nested_jit_and_remat_count_once_and_elementwise_work_not_at_all():
    dense = nn.Dense(7)
    params = dense.init(jax.random.PRNGKey(0), jnp.ones((1, 5)))

    def forward(p, x):
        y = jax.checkpoint(lambda x: dense.apply(p, x))(x)
        return jax.jit(lambda y: jnp.tanh(y) @ jnp.ones((7, 2)))(y)

    assert matmul_flops(forward, params, jnp.ones((4, 5))) == 2 * 4 * 5 * 7 + 2 * 4 * 7 * 2


def test_a_scan_counts_its_body_per_iteration_and_a_cond_its_costliest_branch():
    w = jnp.ones((5, 5))

    def scanned(x):
        return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=6)[0]

    def branch(x, flag):
        return jax.lax.cond(flag, lambda x: x @ w @ w, lambda x: x @ w, x)

    x = jnp.ones((4, 5))
    assert matmul_flops(scanned, x) == 6 * 2 * 4 * 5 * 5
    assert matmul_flops(branch, x, True) == 2 * (2 * 4 * 5 * 5)
