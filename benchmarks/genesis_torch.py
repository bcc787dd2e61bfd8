"""GENESIS (Engelcke et al., ICLR 2020) and GENESIS-v2 (NeurIPS 2021) in plain PyTorch, for benchmarks only.

    python -m benchmarks.genesis_torch            # builds both at K = 5, batch 8; one forward, timed train steps

Written from `shared/spec/genesis_reference.md` (Parts 0, A, B, C.1), not from the official (GPL) code. PyTorch is
not a noisegroup requirement: only benchmarks import this module. Public functions take NHWC float32 images in
[0, 1] (`[b, h, w, 3]`); inside, everything is NCHW. All randomness is passed in (house style): GENESIS takes
eps_mask `[k, b, 64]` and eps_comp `[k, b, 16]`, GENESIS-v2 takes seed scores r `[b, h*w]` in [0, 1) and eps
`[k, b, 64]`. Initialisation is PyTorch's default everywhere except the v2 SemiConv gate (0) and the IC-SBP
log-bandwidth (log 1/(K ln 2)), as in the spec (C.2). Internal slot axes are slot-major: `[k, b, ...]`, and batched
slot calls run on `k*b` rows in that order.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)
PIXEL_SIGMA = 0.7  # pixel_std1 = pixel_std2 = 0.7 for both models (A.1, B.1): one scalar suffices


# ---------------------------------------------------------------- shared pieces (spec Part 0, A.8, A.10, B.8)

def to_sigma(v):
    """Posterior scale softplus(v + 0.5) + 1e-8 (to_sigma(0) = 0.974077)."""
    return F.softplus(v + 0.5) + 1e-8


def to_prior_sigma(v):
    """Learned-prior scale sigmoid(v + 4) + 1e-4, in (1e-4, 1 + 1e-4)."""
    return torch.sigmoid(v + 4.0) + 1e-4


def normal_log_prob(x, mu, sigma):
    """Elementwise log N(x; mu, sigma^2); sigma a tensor or a float."""
    log_sigma = torch.log(sigma) if torch.is_tensor(sigma) else math.log(sigma)
    return -((x - mu) ** 2) / (2 * sigma**2) - log_sigma - 0.5 * LOG_2PI


def clamp_st(x, lo, hi):
    """Straight-through clamp: forward clip(x, lo, hi), gradient of the identity."""
    return x + (x.clamp(lo, hi) - x).detach()


def coord_grid(n):
    """`[2, n, n]`: linspace(-1, 1, n) grids, 'ij' indexing; channel 0 = row (down the image), 1 = column."""
    lin = torch.linspace(-1, 1, n)
    return torch.stack(torch.meshgrid(lin, lin, indexing="ij"))


def broadcast_with_coords(z, size):
    """Spatial broadcast `[n, d]` -> `[n, d + 2, size, size]`, channels ordered [z, row, col]."""
    n, d = z.shape
    coords = coord_grid(size).to(z)[None].expand(n, 2, size, size)
    return torch.cat([z[:, :, None, None].expand(n, d, size, size), coords], 1)


def mixture_nll(x, log_masks, means, sigma=PIXEL_SIGMA):
    """Per-channel mixture NLL (A.8, A.10, D.18) in nats per image.

    x `[b, c, h, w]`, log_masks `[k, b, 1, h, w]`, means `[k, b, c, h, w]` -> `[b]`: -sum over pixels and channels of
    logsumexp_k(log m_k + log N(x; mean_k, sigma^2)); constants kept."""
    return -torch.logsumexp(log_masks + normal_log_prob(x[None], means, sigma), 0).sum((1, 2, 3))


class AutoregressivePrior(nn.Module):
    """p(z_1) = N(0, I); p(z_k | z_<k) = N(tanh nu_k, to_prior_sigma(t_k)) from an LSTM(d -> 4d) over z_1..z_{k-1}
    (teacher forcing on the posterior samples) and Linear(4d -> 2d) (A.8, B.8). Same module in both models."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.lstm = nn.LSTM(dim, 4 * dim)  # PyTorch's two bias vectors: 329,728 parameters at dim 64
        self.head = nn.Linear(4 * dim, 2 * dim)

    def kl(self, z, mu_q, sigma_q):
        """Single-sample Monte-Carlo KL, z, mu_q, sigma_q `[k, b, d]` -> `[k, b]` (summed over d)."""
        out, _ = self.lstm(z[:-1])  # zero initial state; [k - 1, b, 4d], position k-1 predicts z_k
        nu, t = self.head(out).chunk(2, -1)
        mu_p = torch.cat([torch.zeros_like(z[:1]), torch.tanh(nu)], 0)
        sigma_p = torch.cat([torch.ones_like(z[:1]), to_prior_sigma(t)], 0)
        return (normal_log_prob(z, mu_q, sigma_q) - normal_log_prob(z, mu_p, sigma_p)).sum(-1)


# ---------------------------------------------------------------- GENESIS (spec Part A)

class GatedConv(nn.Module):
    """Gated (transposed) conv (A.3, A.5): one biased conv emitting 2*c_out channels split [h, g];
    out = BN_h(h) * sigmoid(BN_g(g)), two separate BatchNorms (or none: the k16 'fully connected' layers)."""

    def __init__(self, c_in, c_out, k, stride=1, pad=0, norm=True, transpose=False, output_padding=0):
        super().__init__()
        if transpose:
            self.conv = nn.ConvTranspose2d(c_in, 2 * c_out, k, stride, pad, output_padding=output_padding)
        else:
            self.conv = nn.Conv2d(c_in, 2 * c_out, k, stride, pad)
        self.norm_h = nn.BatchNorm2d(c_out) if norm else nn.Identity()  # eps 1e-5, momentum 0.1 (Part 0)
        self.norm_g = nn.BatchNorm2d(c_out) if norm else nn.Identity()

    def forward(self, x):
        h, g = self.conv(x).chunk(2, 1)
        return self.norm_h(h) * torch.sigmoid(self.norm_g(g))


class Genesis(nn.Module):
    """GENESIS with the default flags of A.1 (two-stage, autoregressive prior, component prior, BN, sigma 0.7).

    12,620,548 parameters at 64 x 64 (A.12), independent of K. Needs K >= 2 (K = 1 is a plain VAE, A.13)."""

    def __init__(self, num_slots: int = 5, img_size: int = 64, mask_dim: int = 64, comp_dim: int = 16):
        super().__init__()
        assert num_slots >= 2 and img_size % 16 == 0
        self.K, self.size, self.mask_dim, self.comp_dim = num_slots, img_size, mask_dim, comp_dim
        big = img_size // 4  # the 'fully connected' kernel: 16 at 64 x 64 (8 at 32 x 32)
        self.mask_encoder = nn.Sequential(  # strides [1, 2, 1, 2, 1], then k16 -> 1 x 1 x 256
            GatedConv(3, 32, 5, 1, 2), GatedConv(32, 32, 5, 2, 2), GatedConv(32, 64, 5, 1, 2),
            GatedConv(64, 64, 5, 2, 2), GatedConv(64, 64, 5, 1, 2), GatedConv(64, 256, big, 1, 0, norm=False))
        self.q_mu, self.q_v = nn.Linear(256, mask_dim), nn.Linear(256, mask_dim)  # step 1 heads
        self.post_lstm = nn.LSTMCell(256 + mask_dim, 2 * mask_dim)  # input [h, z_{k-1}], steps k >= 2
        self.post_head = nn.Linear(2 * mask_dim, 2 * mask_dim)
        self.mask_decoder = nn.Sequential(  # 1 -> 16 -> 16 -> 32 -> 32 -> 64 -> 64, 1 x 1 conv to a logit
            GatedConv(mask_dim, 64, big, norm=False, transpose=True),
            GatedConv(64, 64, 5, 1, 2, transpose=True), GatedConv(64, 32, 5, 2, 2, transpose=True, output_padding=1),
            GatedConv(32, 32, 5, 1, 2, transpose=True), GatedConv(32, 32, 5, 2, 2, transpose=True, output_padding=1),
            GatedConv(32, 32, 5, 1, 2, transpose=True), nn.Conv2d(32, 1, 1))
        self.comp_encoder = nn.Sequential(  # input [log m_k, R, G, B]; 64 -> 32 -> 16 -> 8 -> 4, ELU throughout
            nn.Conv2d(4, 32, 3, 2, 1), nn.ELU(), nn.Conv2d(32, 32, 3, 2, 1), nn.ELU(),
            nn.Conv2d(32, 64, 3, 2, 1), nn.ELU(), nn.Conv2d(64, 64, 3, 2, 1), nn.ELU(), nn.Flatten(),  # (C, H, W)
            nn.Linear(64 * (img_size // 16) ** 2, 256), nn.ELU(), nn.Linear(256, 2 * comp_dim))
        self.comp_decoder = nn.Sequential(  # broadcast to size + 8 = 72, four valid 3x3 convs -> 64, 1x1 to RGB
            nn.Conv2d(comp_dim + 2, 32, 3), nn.ELU(), nn.Conv2d(32, 32, 3), nn.ELU(),
            nn.Conv2d(32, 32, 3), nn.ELU(), nn.Conv2d(32, 32, 3), nn.ELU(), nn.Conv2d(32, 3, 1))
        self.mask_prior = AutoregressivePrior(mask_dim)
        self.comp_prior = nn.Sequential(nn.Linear(mask_dim, 256), nn.ELU(), nn.Linear(256, 256), nn.ELU(),
                                        nn.Linear(256, 2 * comp_dim))

    @staticmethod
    def stick_breaking(logits):
        """Log-space stick-breaking (A.6): logits `[k, ...]` -> log masks `[k, ...]`. The K-th logit is unused:
        log m_k = log s_{k-1} + logsig(a_k) for k < K, log m_K = log s_{K-1}, log s_k = sum_{j<=k} logsig(-a_j)."""
        log_rest = torch.cumsum(F.logsigmoid(-logits[:-1]), 0)  # log s_1 .. log s_{K-1}
        log_scope = torch.cat([torch.zeros_like(logits[:1]), log_rest], 0)  # log s_0 .. log s_{K-1}
        return torch.cat([log_scope[:-1] + F.logsigmoid(logits[:-1]), log_scope[-1:]], 0)

    def forward(self, images, eps_mask, eps_comp):
        """images `[b, h, w, 3]` in [0, 1], eps_mask `[k, b, 64]`, eps_comp `[k, b, 16]` -> dict of
        nll `[b]`, kl `[b]` (sum over slots of mask KL + component KL), kl_mask / kl_comp `[k, b]`,
        log_masks `[b, k, h, w]`, means `[b, k, h, w, 3]`, recon `[b, h, w, 3]`."""
        x = images.permute(0, 3, 1, 2)  # NCHW
        K, (b, _, h, w) = self.K, x.shape

        # Sequential mask posterior (A.4): the image is encoded once; z_{k-1} (a sample) feeds the LSTM.
        enc = self.mask_encoder(x).flatten(1)  # [b, 256]
        mu, sigma = self.q_mu(enc), to_sigma(self.q_v(enc))
        z = mu + sigma * eps_mask[0]
        zs, mus, sigmas, state = [z], [mu], [sigma], None
        for k in range(1, K):
            state = self.post_lstm(torch.cat([enc, z], 1), state)  # zero initial state when None
            mu, v = self.post_head(state[0]).chunk(2, 1)
            sigma = to_sigma(v)
            z = mu + sigma * eps_mask[k]
            zs.append(z)
            mus.append(mu)
            sigmas.append(sigma)
        z_m, mu_m, sigma_m = torch.stack(zs), torch.stack(mus), torch.stack(sigmas)  # [k, b, 64]

        # All K latents decoded as ONE k*b batch: in train mode the BatchNorm statistics pool slots (A.5, D.5).
        logits = self.mask_decoder(z_m.reshape(K * b, self.mask_dim, 1, 1)).view(K, b, 1, h, w)
        log_masks = self.stick_breaking(logits)  # [k, b, 1, h, w]

        # Component VAE on [log m_k, x] (the log mask, unclipped: D.17), batched over slots.
        comp_in = torch.cat([log_masks, x[None].expand(K, b, 3, h, w)], 2).view(K * b, 4, h, w)
        mu_c, v_c = self.comp_encoder(comp_in).chunk(2, 1)
        sigma_c = to_sigma(v_c)
        z_c = mu_c + sigma_c * eps_comp.reshape(K * b, self.comp_dim)
        means = torch.sigmoid(self.comp_decoder(broadcast_with_coords(z_c, h + 8))).view(K, b, 3, h, w)

        # Losses (A.10): mixture NLL; MC KLs against the autoregressive mask prior and p(z^c_k | z^m_k).
        nll = mixture_nll(x, log_masks, means)
        kl_mask = self.mask_prior.kl(z_m, mu_m, sigma_m)
        nu, t = self.comp_prior(z_m).chunk(2, -1)  # every slot, incl. k = K; gradients flow into z^m_k
        z_c, mu_c, sigma_c = (a.view(K, b, self.comp_dim) for a in (z_c, mu_c, sigma_c))
        kl_comp = (normal_log_prob(z_c, mu_c, sigma_c)
                   - normal_log_prob(z_c, torch.tanh(nu), to_prior_sigma(t))).sum(-1)
        return {"nll": nll, "kl": (kl_mask + kl_comp).sum(0), "kl_mask": kl_mask, "kl_comp": kl_comp,
                "log_masks": log_masks[:, :, 0].transpose(0, 1), "means": means.permute(1, 0, 3, 4, 2),
                "recon": (log_masks.exp() * means).sum(0).permute(0, 2, 3, 1)}


# ---------------------------------------------------------------- GENESIS-v2 (spec Part B)

def conv_gn_relu(c_in, c_out):
    """3x3 conv (stride 1, pad 1, no bias) -> GroupNorm(8, eps 1e-5) -> ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.GroupNorm(8, c_out), nn.ReLU())


class UNet(nn.Module):
    """The v2 U-Net (B.3) without its final conv: `[b, 3, h, w]` -> F `[b, 64, h, w]`. Five blocks at every size
    (the official depth log2(size) - 1 equals 5 at 64 x 64 only); bottleneck MLP on the (size/16)^2 x 128 map."""

    def __init__(self, img_size: int = 64):
        super().__init__()
        flat = 128 * (img_size // 16) ** 2  # 2048 at 64 x 64
        self.down = nn.ModuleList([conv_gn_relu(3, 64), conv_gn_relu(64, 64), conv_gn_relu(64, 128),
                                   conv_gn_relu(128, 128), conv_gn_relu(128, 128)])
        self.mlp = nn.Sequential(nn.Linear(flat, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                                 nn.Linear(128, flat), nn.ReLU())
        self.up = nn.ModuleList([conv_gn_relu(256, 128), conv_gn_relu(256, 128), conv_gn_relu(256, 64),
                                 conv_gn_relu(128, 64), conv_gn_relu(128, 64)])

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            skips.append(x)
            if i < len(self.down) - 1:
                x = x[:, :, ::2, ::2]  # PyTorch's nearest x0.5 takes pixel 2i (Part 0)
        h = self.mlp(x.flatten(1)).view_as(x)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips[-1 - i]], 1))  # [current, skip]
            if i < len(self.up) - 1:
                h = F.interpolate(h, scale_factor=2, mode="nearest")  # output i = input floor(i/2)
        return h  # already ReLU'd: the extra ReLU of the official forward is a no-op (D.21)


class SemiConv(nn.Module):
    """u = gate * Conv1x1(64 -> 8)(x) + [0, ..., 0, row, col] (B.4); scalar gate initialised to 0, so at init the
    embeddings are pure pixel positions."""

    def __init__(self, c_in: int, dim: int, img_size: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, dim, 1)
        self.gate = nn.Parameter(torch.zeros(()))
        offsets = torch.cat([torch.zeros(dim - 2, img_size, img_size), coord_grid(img_size)])
        self.register_buffer("offsets", offsets[None], persistent=False)  # a buffer: not a parameter

    def forward(self, x):
        return self.gate * self.conv(x) + self.offsets


class GenesisV2(nn.Module):
    """GENESIS-v2 with the default flags of B.1 (Gaussian IC-SBP, semiconv, autoregressive prior, sigma 0.7).

    2,729,422 parameters at 64 x 64 (B.10), independent of K."""

    def __init__(self, num_slots: int = 5, img_size: int = 64, feat_dim: int = 64, embed_dim: int = 8):
        super().__init__()
        assert num_slots >= 2 and img_size % 16 == 0
        self.K, self.size, self.feat_dim = num_slots, img_size, feat_dim
        self.unet = UNet(img_size)
        self.seg_head = conv_gn_relu(64, 64)
        self.semiconv = SemiConv(64, embed_dim, img_size)
        # Gaussian-kernel bandwidth sigma = exp(l), initial 1/(K ln 2): psi = 0.5 at squared distance 1/K (B.5).
        self.log_bandwidth = nn.Parameter(torch.tensor(math.log(1.0 / (num_slots * math.log(2.0)))))
        self.feat_head = nn.Sequential(conv_gn_relu(64, 64), nn.Conv2d(64, 128, 1))
        self.z_head = nn.Sequential(nn.LayerNorm(128, eps=1e-5), nn.Linear(128, 128), nn.ReLU(),
                                    nn.Linear(128, 2 * feat_dim))
        layers, c_in = [], feat_dim + 2
        for _ in range(4):  # 4 -> 8 -> 16 -> 32 -> 64; (in - 1) * 2 - 4 + 5 + 1 = 2 * in
            layers += [nn.ConvTranspose2d(c_in, 64, 5, 2, 2, output_padding=1), nn.GroupNorm(8, 64), nn.ReLU()]
            c_in = 64
        self.decoder = nn.Sequential(*layers, nn.Conv2d(64, 4, 1))  # RGB logits + 1 mask logit
        self.prior = AutoregressivePrior(feat_dim)

    def ic_sbp(self, u, r):
        """Instance-colouring stick-breaking (B.5): u `[b, e, h, w]`, r `[b, h*w]` -> log masks `[k, b, h*w]`."""
        b = u.shape[0]
        u = u.flatten(2).transpose(1, 2)  # [b, n, e]
        rows = torch.arange(b)
        log_scope, log_masks = torch.zeros_like(u[..., 0]), []
        for _ in range(self.K - 1):
            seed_idx = torch.argmax(r * log_scope.detach().exp(), 1)  # first index on ties; no gradient through it
            seed = u[rows, seed_idx]  # [b, e]; the gather carries gradient into the seed pixel's embedding
            alpha = torch.exp(-((u - seed[:, None]) ** 2).sum(-1) / self.log_bandwidth.exp())  # no factor 2 (D.13)
            alpha = clamp_st(alpha, 0.01, 0.99)  # never hard: the seed pixel gets 0.99
            log_masks.append(log_scope + torch.log(alpha))
            log_scope = log_scope + torch.log1p(-alpha)
        return torch.stack(log_masks + [log_scope])

    def forward(self, images, r, eps):
        """images `[b, h, w, 3]` in [0, 1], r `[b, h*w]` uniform in [0, 1), eps `[k, b, 64]` -> dict of nll `[b]`,
        kl `[b]` (summed over slots), log_masks `[b, k, h, w]` (IC-SBP; segmentation), decoder_log_masks
        `[b, k, h, w]` (used in the likelihood), means `[b, k, h, w, 3]`, recon `[b, h, w, 3]`."""
        x = images.permute(0, 3, 1, 2)
        K, (b, _, h, w) = self.K, x.shape
        feats = self.unet(x)  # [b, 64, h, w]
        log_masks = self.ic_sbp(self.semiconv(self.seg_head(feats)), r)  # [k, b, h*w]

        # Soft masked mean of feat_head(F) per slot (computed once, not per slot as coded: D.21) -> q(z_k).
        g = self.feat_head(feats).flatten(2)  # [b, 128, h*w]
        masks = log_masks.exp()
        pooled = torch.einsum("kbn,bcn->kbc", masks, g) / (masks.sum(-1, keepdim=True) + 1e-5)  # [k, b, 128]
        mu, v = self.z_head(pooled).chunk(2, -1)
        sigma = to_sigma(v)
        z = mu + sigma * eps  # [k, b, 64]

        out = self.decoder(broadcast_with_coords(z.reshape(K * b, self.feat_dim), h // 16)).view(K, b, 4, h, w)
        means = torch.sigmoid(out[:, :, :3])
        dec_log_masks = F.log_softmax(out[:, :, 3:], 0)  # softmax over the K slots
        return {"nll": mixture_nll(x, dec_log_masks, means), "kl": self.prior.kl(z, mu, sigma).sum(0),
                "log_masks": log_masks.view(K, b, h, w).transpose(0, 1),
                "decoder_log_masks": dec_log_masks[:, :, 0].transpose(0, 1), "means": means.permute(1, 0, 3, 4, 2),
                "recon": (dec_log_masks.exp() * means).sum(0).permute(0, 2, 3, 1)}


# ---------------------------------------------------------------- training (spec C.1, C.2)

def parameter_count(model: nn.Module) -> int:
    """Number of learned parameters (BatchNorm running statistics and coordinate buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def geco_loss(nll_mean, kl_mean, beta: float):
    """GENESIS's GECO objective (C.1): err + beta * KL with beta a constant for autodiff; err and KL are batch
    means of the per-image sums (nats per image)."""
    return nll_mean + beta * kl_mean


def make_optimizer(model: nn.Module):
    """Adam, lr 1e-4, PyTorch defaults otherwise (C.2)."""
    return torch.optim.Adam(model.parameters(), lr=1e-4)


def train_step(model: nn.Module, optimizer, x, *noise, beta: float = 1.0) -> dict:
    """One Adam step on geco_loss: x `[b, h, w, 3]`, noise = (eps_mask, eps_comp) for Genesis or (r, eps) for
    GenesisV2. Returns floats {loss, nll, kl}. GECO's beta update (C.1) is scalar arithmetic on the returned nll,
    done by the caller after the step; it is left out of the timed step on purpose."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    out = model(x, *noise)
    nll, kl = out["nll"].mean(), out["kl"].mean()
    loss = geco_loss(nll, kl, beta)
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "nll": nll.item(), "kl": kl.item()}


def _noise(model, b: int, generator):
    """Fresh noise of the shapes each model's forward takes."""
    K, n = model.K, model.size
    if isinstance(model, Genesis):
        return (torch.randn(K, b, model.mask_dim, generator=generator),
                torch.randn(K, b, model.comp_dim, generator=generator))
    return torch.rand(b, n * n, generator=generator), torch.randn(K, b, model.feat_dim, generator=generator)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed train steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average at start: {load} (timings move with it on a shared CPU)")
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(args.batch, 64, 64, 3, generator=gen)
    expected = {"Genesis": 12_620_548, "GenesisV2": 2_729_422}  # spec A.12 / B.10, PyTorch two-bias LSTMs
    for cls in (Genesis, GenesisV2):
        model = cls(args.slots)
        count = parameter_count(model)
        print(f"{cls.__name__}: K={args.slots}, {count:,} parameters (spec {expected[cls.__name__]:,})")
        assert count == expected[cls.__name__]
        with torch.no_grad():
            out = model(x, *_noise(model, args.batch, gen))
        for key, value in out.items():
            if value.dim() == 1:
                print(f"  {key:18s} {tuple(value.shape)}  mean {value.mean().item():.2f}")
            else:
                print(f"  {key:18s} {tuple(value.shape)}")
        for key in ("log_masks", "decoder_log_masks"):
            if key in out:
                err = (out[key].exp().sum(1) - 1).abs().max().item()
                print(f"  sum_k exp({key}) - 1: max |.| = {err:.2e}")
                assert err <= 1e-5, (key, err)
        optimizer = make_optimizer(model)
        train_step(model, optimizer, x, *_noise(model, args.batch, gen))  # warm-up (Adam state allocation)
        times = []
        for _ in range(args.repeats):
            noise = _noise(model, args.batch, gen)
            start = time.perf_counter()
            stats = train_step(model, optimizer, x, *noise, beta=1.0)
            times.append(time.perf_counter() - start)
        print(f"  train step, batch {args.batch}, {torch.get_num_threads()} threads: median "
              f"{statistics.median(times):.3f} s over {args.repeats} (all: {', '.join(f'{t:.3f}' for t in times)});"
              f" loss {stats['loss']:.1f}")
    print("load average at end:", " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
