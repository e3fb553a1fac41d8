"""PoseAnything's keypoint transformer: encoder, proposal generator and graph decoder.

Every tensor is batch-first ([B, tokens, C]); `nn.MultiheadAttention(batch_first=True)` keeps the
parameter names of the official sequence-first modules. Key-padding masks are True where a token
must be ignored. Inference only: dropout is left out (the identity in eval mode).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import DynaPoseError

NUM_POS_FEATS = 128  # per axis; the embedding is [y ; x], 256 channels


def _sine_embed(values: Tensor) -> Tensor:
    """[...] angles -> [..., 128]: sin/cos pairs over DETR's geometric frequencies, interleaved."""
    steps = torch.arange(NUM_POS_FEATS, dtype=torch.float32, device=values.device)
    frequencies = 10000 ** (2 * (steps // 2) / NUM_POS_FEATS)  # [128], each value twice
    angles = values[..., None] / frequencies
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def grid_position_encoding(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """DETR sine embedding of a feature map's cells, row-major: [H*W, 256]."""
    ys = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    xs = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    # Cell i sits at (i + 1) / (n + eps) * 2pi, the normalised cumulative-sum form of the original.
    ys = ys / (ys[-1] + 1e-6) * (2 * math.pi)
    xs = xs / (xs[-1] + 1e-6) * (2 * math.pi)
    pos_y = _sine_embed(ys)[:, None].expand(height, width, NUM_POS_FEATS)
    pos_x = _sine_embed(xs)[None, :].expand(height, width, NUM_POS_FEATS)
    return torch.cat((pos_y, pos_x), dim=-1).reshape(height * width, 2 * NUM_POS_FEATS)


def coordinate_position_encoding(points: Tensor) -> Tensor:
    """Sine embedding of normalised (x, y) points: [B, K, 2] in [0, 1] -> [B, K, 256]."""
    angles = points * (2 * math.pi)
    return torch.cat((_sine_embed(angles[..., 1]), _sine_embed(angles[..., 0])), dim=-1)


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def adjacency_from_skeleton(skeleton: list[tuple[int, int]], ignored: Tensor) -> Tensor:
    """The two GCN kernels [B, 2, K, K] for edges `skeleton` (0-based) and keypoints `ignored` [B, K].

    Kernel 0 is the self term diag(valid). Kernel 1 is the symmetrised edge matrix with ignored
    keypoints cut out, each row divided by its degree; `GCNLayer` contracts over the row index,
    so a node receives each neighbour v scaled by 1/deg(v), as in the official model.
    """
    num_points = ignored.shape[1]
    valid = (~ignored).float()  # [B, K]
    edges = torch.as_tensor(skeleton, dtype=torch.long, device=ignored.device).reshape(-1, 2)  # [E, 2]
    if edges.numel() and (edges.min() < 0 or edges.max() >= num_points):
        raise DynaPoseError(f"skeleton edge index out of range for {num_points} keypoints (0-based): {skeleton}")
    edge_matrix = torch.zeros(num_points, num_points, device=ignored.device)
    edge_matrix[edges[:, 0], edges[:, 1]] = 1
    edge_matrix = torch.maximum(edge_matrix, edge_matrix.T)
    edge_matrix = edge_matrix[None] * valid[:, :, None] * valid[:, None, :]  # [B, K, K]
    # Degrees are whole numbers, so clamping at 1 only turns the official 0/0 (-> 0) of isolated rows into 0/1.
    edge_matrix = edge_matrix / edge_matrix.sum(dim=-1, keepdim=True).clamp(min=1)
    return torch.stack((torch.diag_embed(valid), edge_matrix), dim=1)


class EncoderLayer(nn.Module):
    """Post-norm self-attention + FFN. The positional embedding is added to the input and kept in the residual."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor, ignored: Tensor) -> Tensor:
        # The official layer re-adds `pos` at every layer and uses the sum as query, key, value and residual.
        x = x + pos
        x = self.norm1(x + self.self_attn(x, x, x, key_padding_mask=ignored, need_weights=False)[0])
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class Encoder(nn.Module):
    """Joint self-attention over [query image tokens ; support keypoint tokens]."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, ffn_dim) for _ in range(num_layers))

    def forward(self, image: Tensor, grid_pos: Tensor, support: Tensor, ignored: Tensor) -> tuple[Tensor, Tensor]:
        """image [B, HW, C], grid_pos [HW, C], support [B, K, C], ignored [B, K] -> (memory, support)."""
        num_cells = image.shape[1]
        tokens = torch.cat((image, support), dim=1)  # [B, HW+K, C]
        # Support tokens get a zero positional embedding; no image cell is ever ignored.
        pos = torch.cat((grid_pos, grid_pos.new_zeros(support.shape[1], grid_pos.shape[1])))  # [HW+K, C]
        key_ignored = torch.cat((ignored.new_zeros(ignored.shape[0], num_cells), ignored), dim=1)  # [B, HW+K]
        for layer in self.layers:
            tokens = layer(tokens, pos, key_ignored)
        return tokens[:, :num_cells], tokens[:, num_cells:]


class ProposalGenerator(nn.Module):
    """Initial keypoint locations from the similarity of support tokens and query cells."""

    def __init__(self, dim: int, proj_dim: int, dynamic_dim: int):
        super().__init__()
        self.support_proj = nn.Linear(dim, proj_dim)
        self.query_proj = nn.Linear(dim, proj_dim)
        self.dynamic_proj = nn.Sequential(nn.Linear(dim, dynamic_dim), nn.ReLU(), nn.Linear(dynamic_dim, dim))

    def forward(self, memory: Tensor, support: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
        """memory [B, HW, C], support [B, K, C] -> (global [B, K, 2], local [B, K, 2], similarity [B, K, H, W]).

        Points are normalised (x, y) in [0, 1]. `global` is the soft-argmax over the whole map (what the
        official model returns as its proposal); `local` is the soft-argmax restricted to the 3x3 cells
        around the arg-max cell, which seeds the decoder. The arg-max picks the window without a
        gradient (as in the official model); the weights inside it keep theirs.
        """
        support = self.support_proj(support)
        support = (torch.tanh(self.dynamic_proj(support)) + 1) * support  # [B, K, C]
        similarity = support @ self.query_proj(memory).transpose(1, 2)  # [B, K, HW]
        probs = similarity.softmax(dim=-1)

        rows = torch.arange(height, device=memory.device).repeat_interleave(width)  # [HW]
        cols = torch.arange(width, device=memory.device).repeat(height)  # [HW]
        centres = torch.stack(((cols + 0.5) / width, (rows + 0.5) / height), dim=-1)  # [HW, 2]
        global_points = probs @ centres  # [B, K, 2]

        peak = similarity.argmax(dim=-1, keepdim=True)  # [B, K, 1]
        near = ((rows - peak // width).abs() <= 1) & ((cols - peak % width).abs() <= 1)  # [B, K, HW]
        local = probs * near
        local = local / (local.sum(dim=-1, keepdim=True) + 1e-10)
        return global_points, local @ centres, similarity.view(*similarity.shape[:2], height, width)


class GCNLayer(nn.Module):
    """Two-kernel graph convolution followed by ReLU: [B, K, C_in] -> [B, K, C_out]."""

    def __init__(self, in_dim: int, out_dim: int, num_kernels: int = 2):
        super().__init__()
        self.num_kernels = num_kernels
        self.conv = nn.Conv1d(in_dim, out_dim * num_kernels, kernel_size=1)

    def forward(self, x: Tensor, adjacency: Tensor) -> Tensor:  # adjacency [B, kernels, K, K]
        features = self.conv(x.transpose(1, 2))  # [B, kernels*C_out, K]
        features = features.view(x.shape[0], self.num_kernels, -1, x.shape[1])  # [B, kernels, C_out, K]
        return F.relu(torch.einsum("bkcv,bkvw->bwc", features, adjacency))


class DecoderLayer(nn.Module):
    """Post-norm: keypoint self-attention, cross-attention to the query image, graph FFN."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        # Content and position are concatenated (512 wide) for query and key; values are the 256-d memory.
        self.multihead_attn = nn.MultiheadAttention(2 * dim, num_heads, vdim=dim, batch_first=True)
        self.choker = nn.Linear(2 * dim, dim)
        self.ffn1 = GCNLayer(dim, ffn_dim)
        self.ffn2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self, tgt: Tensor, memory: Tensor, grid_pos: Tensor, query_pos: Tensor, ignored: Tensor, adjacency: Tensor
    ) -> Tensor:
        """tgt [B, K, C], memory [B, HW, C], grid_pos [HW, C], query_pos [B, K, C], ignored [B, K] -> [B, K, C]."""
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.self_attn(q, q, tgt, key_padding_mask=ignored, need_weights=False)[0])
        cross_q = torch.cat((tgt, query_pos), dim=-1)  # [B, K, 2C]
        cross_k = torch.cat((memory, grid_pos.expand(memory.shape[0], -1, -1)), dim=-1)  # [B, HW, 2C]
        attended = self.multihead_attn(cross_q, cross_k, memory, need_weights=False)[0]  # [B, K, 2C]
        tgt = self.norm2(tgt + self.choker(attended))
        # GCNLayer applies ReLU itself; the official layer applies a second (no-op) ReLU on top.
        return self.norm3(tgt + self.ffn2(self.ffn1(tgt, adjacency)))


class PointEmbeddingMLP(nn.Module):
    """Maps the sine embedding of a reference point to the decoder's query position (Linear-GELU-Linear)."""

    def __init__(self, dim: int):
        super().__init__()
        self.layers = nn.ModuleList((nn.Linear(dim, dim), nn.Linear(dim, dim)))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers[1](F.gelu(self.layers[0](x)))


class OffsetMLP(nn.Module):
    """Per-layer keypoint branch: token [.., C] -> (x, y) offset in inverse-sigmoid space [.., 2]."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = [module for _ in range(3) for module in (nn.Linear(dim, dim), nn.GELU())]
        self.mlp = nn.Sequential(*hidden, nn.Linear(dim, 2))  # indices 0, 2, 4, 6 hold the weights

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


class GraphDecoder(nn.Module):
    """Refines keypoint tokens layer by layer, each layer moving its reference points."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, num_heads, ffn_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.ref_point_head = PointEmbeddingMLP(dim)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        grid_pos: Tensor,
        proposals: Tensor,
        ignored: Tensor,
        adjacency: Tensor,
        offset_heads: nn.ModuleList,
    ) -> Tensor:
        """Keypoints [L, B, K, 2] in [0, 1], one set per layer, from the local `proposals` [B, K, 2].

        Layer l outputs sigmoid(head_l(norm(tgt_l)) + inverse_sigmoid(ref_l)). Its successor's reference
        is sigmoid(inverse_sigmoid(ref_l) + head_l(tgt_l)) on the un-normed tokens. As in the official
        model, gradients do not flow through the reference a layer starts from (ref_0 and the inner
        ref_l are detached); they do flow through layer 0's query position, each output's reference
        term (for l > 0) and all features.
        """
        outputs = []
        reference = proposals.detach()
        position_source = proposals  # layer 0 embeds the proposals themselves, gradient included
        for index, layer in enumerate(self.layers):
            query_pos = self.ref_point_head(coordinate_position_encoding(position_source))
            tgt = layer(tgt, memory, grid_pos, query_pos, ignored, adjacency)
            outputs.append(torch.sigmoid(offset_heads[index](self.norm(tgt)) + inverse_sigmoid(reference)))
            if index + 1 < len(self.layers):
                reference = torch.sigmoid(inverse_sigmoid(reference.detach()) + offset_heads[index](tgt))
                position_source = reference.detach()
        return torch.stack(outputs)


class KeypointTransformer(nn.Module):
    """Encoder -> proposal generator -> graph decoder (the official `EncoderDecoder`)."""

    def __init__(self, dim: int = 256, num_heads: int = 8, ffn_dim: int = 768, num_layers: int = 3):
        super().__init__()
        self.encoder = Encoder(dim, num_heads, ffn_dim, num_layers)
        self.decoder = GraphDecoder(dim, num_heads, ffn_dim, num_layers)
        self.proposal_generator = ProposalGenerator(dim, proj_dim=256, dynamic_dim=128)
