"""NN-LIFT estimators: first layer by tensor decomposition, scale/bias, output layer, fine-tune."""
