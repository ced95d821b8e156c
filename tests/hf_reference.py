"""The reference: our (Meta-layout) weights copied into Hugging Face's LlamaForCausalLM.

Used by tests/test_model.py (logits equality) and bench/bench_speed.py (speed against it).
Meta rotates adjacent pairs of a head, HF its two halves, so the rows of wq and wk are
permuted as transformers' own LLaMA converter does.
"""
import transformers


def permute(w, n_heads):
    return w.view(n_heads, w.shape[0] // n_heads // 2, 2, w.shape[1]).transpose(1, 2).reshape(w.shape)


def to_hf(model, attn_implementation="sdpa"):
    a = model.args
    config = transformers.LlamaConfig(
        vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=a.hidden_dim,
        num_hidden_layers=a.n_layers, num_attention_heads=a.n_heads, num_key_value_heads=a.kv_heads,
        rms_norm_eps=a.norm_eps, max_position_embeddings=a.max_seq_len, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": a.rope_theta},
        attn_implementation=attn_implementation)
    hf = transformers.LlamaForCausalLM(config).eval()
    sd = {"model.embed_tokens.weight": model.tok_embeddings.weight,
          "model.norm.weight": model.norm.weight, "lm_head.weight": model.output.weight}
    for i, layer in enumerate(model.layers):
        p, at, ff = f"model.layers.{i}.", layer.attention, layer.feed_forward
        sd.update({p + "self_attn.q_proj.weight": permute(at.wq.weight, a.n_heads),
                   p + "self_attn.k_proj.weight": permute(at.wk.weight, a.kv_heads),
                   p + "self_attn.v_proj.weight": at.wv.weight, p + "self_attn.o_proj.weight": at.wo.weight,
                   p + "mlp.gate_proj.weight": ff.w1.weight, p + "mlp.down_proj.weight": ff.w2.weight,
                   p + "mlp.up_proj.weight": ff.w3.weight,
                   p + "input_layernorm.weight": layer.attention_norm.weight,
                   p + "post_attention_layernorm.weight": layer.ffn_norm.weight})
    hf.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=True)
    return hf
