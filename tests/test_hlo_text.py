"""training/hlo_text.py on hand-written HLO: instructions, bytes of result types, and which parameters a program
copies (what benchmarks/train_step.py reports of a donated train state)."""

from training import hlo_text

MODULE = """HloModule jit_step, is_scheduled=true, input_output_alias={ {0}: (0, {}, may-alias) }

%fused_add (a: f32[8,16]) -> f32[8,16] {
  %a = f32[8,16]{1,0} parameter(0)
  ROOT %add.1 = f32[8,16]{1,0} add(f32[8,16]{1,0} %a, f32[8,16]{1,0} %a)
}

ENTRY %main (state.mu: f32[8,16], state.nu: bf16[4], batch: f32[8,16]) -> (f32[8,16], bf16[4]) {
  %state.mu = f32[8,16]{1,0} parameter(0)
  %state.nu = bf16[4]{0} parameter(1)
  %batch = f32[8,16]{1,0} parameter(2)
  %copy.1 = f32[8,16]{1,0} copy(%state.mu)
  %copy.2 = f32[8,16]{1,0} copy(%state.mu)
  %fusion = f32[8,16]{1,0} fusion(%copy.1), kind=kLoop, calls=%fused_add
  %copy.3 = f32[8,16]{1,0} copy(%fusion)
  %copy-start = (bf16[4]{0}, bf16[4]{0}, u32[]) copy-start(%state.nu)
  %copy-done = bf16[4]{0} copy-done(%copy-start)
  ROOT %tuple = (f32[8,16]{1,0}, bf16[4]{0}) tuple(%copy.3, %copy-done)
}
"""


def test_copied_parameters_are_the_entry_parameters_copied_once_each():
    module = hlo_text.parse(MODULE)
    assert module.entry == "main" and [i.opcode for i in module.computations["fused_add"]] == ["parameter", "add"]
    copied = hlo_text.copied_parameters(module)
    # state.mu twice (counted once), state.nu asynchronously; the fusion's output and the batch are not copies of
    # parameters, and the fusion's own parameter lives in another computation.
    assert [p.name for p in copied] == ["state.mu", "state.nu"]
    assert [hlo_text.shape_bytes(p.shape) for p in copied] == [8 * 16 * 4, 4 * 2]
    assert hlo_text.shape_bytes("(bf16[4]{0}, bf16[4]{0}, u32[])") == 8 + 8 + 4
