"""Every configuration key with its default.

Defaults follow the official Deformable DETR (main.py of fundamentalvision/
Deformable-DETR): ResNet-50 with frozen BN, 4 levels, 6+6 layers, 300 queries,
91 classes, AdamW 2e-4 for 50 epochs of COCO at total batch 32. Variants are
YAML diffs of these in configs/.
"""
import math

from fvcore.common.config import CfgNode as CN

from .deprecated import register_deprecated_keys

_C = CN()
# Python modules imported as soon as the config is loaded, so that user
# components and datasets register themselves before anything is built.
_C.IMPORTS = []
_C.OUTPUT_DIR = "./output"
_C.SEED = 42

_C.MODEL = CN()
_C.MODEL.META_ARCHITECTURE = "DeformableDETR"
_C.MODEL.DEVICE = "cuda"
_C.MODEL.WEIGHTS = ""
_C.MODEL.NUM_CLASSES = 91
# What the model's class index stands for (ddetr_plugin/data/label_space.py):
# - "contiguous": label c is the c-th category of the dataset in increasing id order;
#   needs NUM_CLASSES >= the number of categories.
# - "category_id": the label is the dataset's category id itself, as in the official
#   implementation and the HF hub's COCO checkpoints (91 classes for COCO's ids 1-90,
#   the unused ids in between never positive); needs NUM_CLASSES > the largest id.
#   tools/convert_checkpoint.py writes it into the configs of 91-class checkpoints.
# Checkpoints do not store it: a model evaluated or fine-tuned in the other space
# than it was trained in gets every category wrong.
_C.MODEL.LABEL_SPACE = "contiguous"
# The name of each label, in label order (NUM_CLASSES names); empty: the names the checkpoint
# stores (the trainer saves those of DATASETS.TRAIN), else DATASETS.TEST[0]'s categories
# (ddetr_plugin/data/class_names.py). Converted HF models get their id2label here.
_C.MODEL.CLASS_NAMES = []
# RGB, 0-255 (ImageNet statistics, as the official transforms)
_C.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
_C.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
_C.MODEL.NUM_QUERIES = 300
_C.MODEL.NUM_FEATURE_LEVELS = 4
_C.MODEL.WITH_BOX_REFINE = False
_C.MODEL.TWO_STAGE = False
_C.MODEL.AUX_LOSS = True
# CPU fast paths: oneDNN linear, seeded dropout, channels-last backbone inference; env DDETR_CPU_FAST_PATHS=0 forces off
_C.MODEL.CPU_FAST_PATHS = True

_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "ResNetBackbone"
_C.MODEL.BACKBONE.DEPTH = 50  # 18, 34, 50, 101
# "FrozenBN" (official, for pretrained weights), "BN", "SyncBN", "GN" (from scratch)
_C.MODEL.BACKBONE.NORM = "FrozenBN"
# torchvision stage names; the official trains layer2-layer4
_C.MODEL.BACKBONE.TRAIN_LAYERS = ["layer2", "layer3", "layer4"]
# stages whose outputs feed the transformer (strides 8, 16, 32)
_C.MODEL.BACKBONE.OUT_FEATURES = ["layer2", "layer3", "layer4"]
_C.MODEL.BACKBONE.DILATION = False  # DC5: dilate layer4 instead of striding it
# local weights file, never downloaded; empty: random initialisation. ResNetBackbone: a torchvision/timm
# ResNet state dict; TimmBackbone: the weights of timm model TIMM.NAME (.pth/.bin, or .safetensors)
_C.MODEL.BACKBONE.PRETRAINED = ""
# NAME TimmBackbone: a timm model's features_only form (pip install ddetr_plugin[timm]); it reads these
# keys and PRETRAINED, not DEPTH/NORM/TRAIN_LAYERS/OUT_FEATURES/DILATION. Feature names are timm's module
# names with "_" for "." ("layer2" for ResNets, "stages_1" for ConvNeXt, "layers_1" for Swin).
_C.MODEL.BACKBONE.TIMM = CN()
# any name of timm.list_models(), built with pretrained=False
_C.MODEL.BACKBONE.TIMM.NAME = "resnet50"
# timm feature indices (timm's out_indices) returned, increasing (finest first); negative count from the
# end. The last three are strides 8, 16, 32 in timm's ResNets, ConvNeXt, Swin, EfficientNet and RegNet.
_C.MODEL.BACKBONE.TIMM.OUT_INDICES = [-3, -2, -1]
# timm features 0 .. FROZEN_STAGES-1 and all before them get requires_grad False and stay in eval mode
# (fixed batch-norm statistics, no dropout/drop-path). ResNets: feature 0 is the stem, 2 = stem and layer1
# (the official choice); ConvNeXt/Swin: feature 0 is the first stage, 1 = stem and stage 0. 0: train all.
_C.MODEL.BACKBONE.TIMM.FROZEN_STAGES = 0
# every BatchNorm becomes a FrozenBatchNorm2d (as the official ResNet's FrozenBN; per-GPU batches of 2
# are too small for batch statistics); no effect on LayerNorm models (ConvNeXt, Swin). For PRETRAINED
# weights: from scratch set it False (random statistics would stay fixed)
_C.MODEL.BACKBONE.TIMM.FREEZE_BN = True
# more timm.create_model arguments as "name=value" strings (values are Python literals; quote an entry
# with commas in YAML), e.g. ["dynamic_img_size=True", "drop_path_rate=0.2"]; Swin needs dynamic_img_size
_C.MODEL.BACKBONE.TIMM.KWARGS = []

_C.MODEL.POSITION_ENCODING = CN()
# the sine encoding has MODEL.TRANSFORMER.D_MODEL / 2 channels per axis
_C.MODEL.POSITION_ENCODING.NAME = "PositionEmbeddingSine"
_C.MODEL.POSITION_ENCODING.TEMPERATURE = 10000
_C.MODEL.POSITION_ENCODING.NORMALIZE = True
_C.MODEL.POSITION_ENCODING.SCALE = 2 * math.pi
_C.MODEL.POSITION_ENCODING.OFFSET = -0.5

_C.MODEL.TRANSFORMER = CN()
_C.MODEL.TRANSFORMER.NAME = "DeformableTransformer"
_C.MODEL.TRANSFORMER.D_MODEL = 256
_C.MODEL.TRANSFORMER.NHEADS = 8
_C.MODEL.TRANSFORMER.ENC_LAYERS = 6
_C.MODEL.TRANSFORMER.DEC_LAYERS = 6
_C.MODEL.TRANSFORMER.DIM_FEEDFORWARD = 1024
_C.MODEL.TRANSFORMER.DROPOUT = 0.1
_C.MODEL.TRANSFORMER.ACTIVATION = "relu"
_C.MODEL.TRANSFORMER.ENC_N_POINTS = 4
_C.MODEL.TRANSFORMER.DEC_N_POINTS = 4
_C.MODEL.TRANSFORMER.MSDA_BACKEND = "auto"  # "auto", "native", "triton", "pytorch"

_C.MODEL.MATCHER = CN()
_C.MODEL.MATCHER.NAME = "HungarianMatcher"
_C.MODEL.MATCHER.COST_CLASS = 2.0
_C.MODEL.MATCHER.COST_BBOX = 5.0
_C.MODEL.MATCHER.COST_GIOU = 2.0

_C.MODEL.CRITERION = CN()
_C.MODEL.CRITERION.NAME = "SetCriterion"
_C.MODEL.CRITERION.LOSS_CLASS_WEIGHT = 2.0
_C.MODEL.CRITERION.LOSS_BBOX_WEIGHT = 5.0
_C.MODEL.CRITERION.LOSS_GIOU_WEIGHT = 2.0
# the focal loss of the classification loss and of the matching cost
_C.MODEL.CRITERION.FOCAL_ALPHA = 0.25
_C.MODEL.CRITERION.FOCAL_GAMMA = 2.0
# class-agnostic loss on the two-stage encoder proposals ("_enc" terms)
_C.MODEL.CRITERION.ENC_LOSS = True

_C.MODEL.POSTPROCESSOR = CN()
_C.MODEL.POSTPROCESSOR.NAME = "DetectionPostProcessor"

_C.INPUT = CN()
_C.INPUT.MIN_SIZE_TRAIN = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800]
_C.INPUT.MAX_SIZE_TRAIN = 1333
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
_C.INPUT.RANDOM_FLIP = True
# with probability 0.5: resize shortest side to one of RESIZE, crop a random
# region of side in SIZE, then the multi-scale resize
_C.INPUT.CROP = CN()
_C.INPUT.CROP.ENABLED = True
_C.INPUT.CROP.RESIZE = [400, 500, 600]
_C.INPUT.CROP.SIZE = [384, 600]

_C.DATASETS = CN()
_C.DATASETS.TRAIN = ["coco_2017_train"]
_C.DATASETS.TEST = ["coco_2017_val"]

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 2
# Leave out training images without a (non-crowd) box. Off: such images train as
# negatives, as the official implementation trains on all 118,287 COCO train images.
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False

_C.SOLVER = CN()
_C.SOLVER.IMS_PER_BATCH = 32  # total over all processes
_C.SOLVER.BASE_LR = 2e-4
_C.SOLVER.BACKBONE_LR_MULTIPLIER = 0.1
# sampling_offsets and reference_points, as the official lr_linear_proj_mult
_C.SOLVER.LINEAR_PROJ_LR_MULTIPLIER = 0.1
_C.SOLVER.WEIGHT_DECAY = 1e-4
_C.SOLVER.BETAS = [0.9, 0.999]
# 50 epochs of COCO train2017 (all 118,287 images, 3,697 iterations each) at batch 32; drop at epoch 40
_C.SOLVER.MAX_ITER = 184850
_C.SOLVER.STEPS = [147880]
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.WARMUP_ITERS = 0
_C.SOLVER.WARMUP_FACTOR = 0.001
_C.SOLVER.CLIP_MAX_NORM = 0.1  # max total gradient norm; 0 disables clipping
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# keep only the newest N periodic checkpoints model_<iter>.pth (model_final.pth is
# always kept); 0 keeps them all
_C.SOLVER.MAX_TO_KEEP = 0
# also write the final weights as OUTPUT_DIR/model_final.safetensors (no pickle; the config
# and class names in its metadata), loadable with MODEL.WEIGHTS
_C.SOLVER.SAVE_SAFETENSORS = False
# iterations between log lines and training records in metrics.json
_C.SOLVER.LOG_PERIOD = 20
# DDP's find_unused_parameters: needed only if some trainable parameter gets no
# gradient (e.g. two-stage with MODEL.CRITERION.ENC_LOSS False); costs time
_C.SOLVER.DDP_FIND_UNUSED_PARAMETERS = False
# mixed precision: the forward runs under torch.autocast; "float16" adds a
# GradScaler (a step it skips on overflow is normal), "bfloat16" needs none
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False
_C.SOLVER.AMP.DTYPE = "bfloat16"  # "bfloat16" or "float16"
# exponential moving average of the weights, used for evaluation when enabled
_C.SOLVER.EMA = CN()
_C.SOLVER.EMA.ENABLED = False
_C.SOLVER.EMA.DECAY = 0.9998

_C.TEST = CN()
_C.TEST.EVAL_PERIOD = 0  # 0: evaluate at the end only
_C.TEST.DETECTIONS_PER_IMAGE = 100
# Class-wise NMS IoU threshold over the kept detections; 0 (the official) disables it. Short
# trainings leave duplicate detections of one object that NMS removes (see postprocessor.py).
_C.TEST.NMS_THRESH = 0.0

register_deprecated_keys(_C)
