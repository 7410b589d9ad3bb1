import torch

from fbinfer.training.adaptive import TaskWeights, closed_form, gradient_norms


def test_closed_form_hand_computed():
    # L = 3, g = (0, 0.5, 1): (L - g^2)^-1 = (1/3, 1/2.75, 1/2); sum = 1.19697
    w = closed_form(torch.tensor([0.0, 0.5, 1.0]))
    expected = torch.tensor([1 / 3, 1 / 2.75, 1 / 2]) / (1 / 3 + 1 / 2.75 + 1 / 2)
    assert torch.allclose(w, expected)
    assert torch.allclose(w, torch.tensor([0.278481, 0.303797, 0.417722]), atol=1e-6)
    assert abs(float(w.sum()) - 1.0) < 1e-6


def test_equal_gradients_give_equal_weights():
    assert torch.allclose(closed_form(torch.full((3,), 0.3)), torch.full((3,), 1 / 3))


def test_gradient_norms_and_grad_mode():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    losses = [x.sum(), (3 * x).sum(), (x**2).sum()]  # grads: (1,1), (3,3), (2,4)
    g = gradient_norms(losses, x)
    assert torch.allclose(g, torch.tensor([2**0.5, 18**0.5, 20**0.5]))
    w = TaskWeights("grad")(losses, x)
    assert torch.allclose(w, closed_form(g / g.sum()))
    assert not w.requires_grad
    assert w[2] > w[1] > w[0]  # larger gradient, larger weight


def test_loss_mode_is_released_code_variant_and_keeps_gradient():
    x = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    losses = [x[0] * 1, x[1] * 1, x[2] * 1]
    w = TaskWeights("loss")(losses, x)
    ng = torch.softmax(x.detach(), 0) ** 2
    prod = torch.stack([(3 - ng[1]) * (3 - ng[2]), (3 - ng[0]) * (3 - ng[2]), (3 - ng[0]) * (3 - ng[1])])
    assert torch.allclose(w.detach(), prod / prod.sum())  # prod_{j!=i}(L - nG_j), normalised
    assert w.requires_grad  # not stopped, as released


def test_fixed_mode():
    x = torch.ones(1, requires_grad=True)
    assert TaskWeights("fixed", (1, 0, 2))([x, x, x], x).tolist() == [1.0, 0.0, 2.0]
