"""The paper's benchmark class lists and splits (as in the official UEO code), plus PACS.

A split names which classes are *known* (the class-name prior given to the model: the source classes) and which
class folders the *target* folder holds. Target classes outside the prior are the unknowns.

    CDA   closed set:  target = known
    PDA   partial:     target ⊂ known
    ODA   open set:    target ⊃ known (extra classes are unknown)
    OPDA  open-partial: target holds some known classes and some unknown ones
    CSDA  every class known and present
"""
from __future__ import annotations

from dataclasses import dataclass, field
from .shapes import DEFAULT_PRIOR, DOMAINS, SHAPES


@dataclass(frozen=True)
class Preset:
    name: str
    classnames: tuple
    domains: tuple
    n_source: int                                   # the first n classes are the known ones (the prior)
    target: dict = field(default_factory=dict)      # setting -> tuple of class indices in the target folder

    def split(self, setting: str) -> tuple[list[str], list[str]]:
        """(prior, target class folder names) for a setting such as 'ODA'."""
        if setting == "CSDA":
            return list(self.classnames), list(self.classnames)
        if setting not in self.target:
            raise ValueError(f"Preset {self.name} has no setting '{setting}'. Choose one of: "
                             f"{', '.join(['CSDA', *self.target])}")
        prior = list(self.classnames[: self.n_source])
        return prior, [self.classnames[i] for i in self.target[setting]]


def _r(*ranges):
    out = []
    for a, b in ranges:
        out.extend(range(a, b))
    return tuple(out)


def _splits(n_source, pda, oda, opda_known, opda_unknown):
    return {"CDA": _r((0, n_source)), "PDA": _r((0, pda)), "ODA": _r((0, oda)),
            "OPDA": _r((0, opda_known), opda_unknown)}


OFFICE31 = (
    "back_pack bike bike_helmet bookcase bottle calculator desk_chair desk_lamp desktop_computer file_cabinet "
    "headphones keyboard laptop_computer letter_tray mobile_phone monitor mouse mug paper_notebook pen phone printer "
    "projector punchers ring_binder ruler scissors speaker stapler tape_dispenser trash_can").split()

OFFICEHOME = (
    "alarm_clock backpack batteries bed bike bottle bucket calculator calendar candles chair clipboards computer "
    "couch curtains desk_lamp drill eraser exit_sign fan file_cabinet flipflops flowers folder fork glasses hammer "
    "helmet kettle keyboard knives lamp_shade laptop marker monitor mop mouse mug notebook oven pan paper_clip pen "
    "pencil postit_notes printer push_pin radio refrigerator ruler scissors screwdriver shelf sink sneakers soda "
    "speaker spoon table telephone toothbrush toys trash_can tv webcam").split()

VISDA = "aeroplane bicycle bus car horse knife motorcycle person plant skateboard train truck".split()

DOMAINNET = (
    "aircraft_carrier airplane alarm_clock ambulance angel animal_migration ant anvil apple arm asparagus axe "
    "backpack banana bandage barn baseball baseball_bat basket basketball bat bathtub beach bear beard bed bee belt "
    "bench bicycle binoculars bird birthday_cake blackberry blueberry book boomerang bottlecap bowtie bracelet brain "
    "bread bridge broccoli broom bucket bulldozer bus bush butterfly cactus cake calculator calendar camel camera "
    "camouflage campfire candle cannon canoe car carrot castle cat ceiling_fan cello cell_phone chair chandelier "
    "church circle clarinet clock cloud coffee_cup compass computer cookie cooler couch cow crab crayon crocodile "
    "crown cruise_ship cup diamond dishwasher diving_board dog dolphin donut door dragon dresser drill drums duck "
    "dumbbell ear elbow elephant envelope eraser eye eyeglasses face fan feather fence finger fire_hydrant fireplace "
    "firetruck fish flamingo flashlight flip_flops floor_lamp flower flying_saucer foot fork frog frying_pan garden "
    "garden_hose giraffe goatee golf_club grapes grass guitar hamburger hammer hand harp hat headphones hedgehog "
    "helicopter helmet hexagon hockey_puck hockey_stick horse hospital hot_air_balloon hot_dog hot_tub hourglass "
    "house house_plant hurricane ice_cream jacket jail kangaroo key keyboard knee knife ladder lantern laptop leaf "
    "leg light_bulb lighter lighthouse lightning line lion lipstick lobster lollipop mailbox map marker matches "
    "megaphone mermaid microphone microwave monkey moon mosquito motorbike mountain mouse moustache mouth mug "
    "mushroom nail necklace nose ocean octagon octopus onion oven owl paintbrush paint_can palm_tree panda pants "
    "paper_clip parachute parrot passport peanut pear peas pencil penguin piano pickup_truck picture_frame pig pillow "
    "pineapple pizza pliers police_car pond pool popsicle postcard potato power_outlet purse rabbit raccoon radio "
    "rain rainbow rake remote_control rhinoceros rifle river roller_coaster rollerskates sailboat sandwich saw "
    "saxophone school_bus scissors scorpion screwdriver sea_turtle see_saw shark sheep shoe shorts shovel sink "
    "skateboard skull skyscraper sleeping_bag smiley_face snail snake snorkel snowflake snowman soccer_ball sock "
    "speedboat spider spoon spreadsheet square squiggle squirrel stairs star steak stereo stethoscope stitches "
    "stop_sign stove strawberry streetlight string_bean submarine suitcase sun swan sweater swing_set sword syringe "
    "table teapot teddy-bear telephone television tennis_racquet tent The_Eiffel_Tower The_Great_Wall_of_China "
    "The_Mona_Lisa tiger toaster toe toilet tooth toothbrush toothpaste tornado tractor traffic_light train tree "
    "triangle trombone truck trumpet t-shirt umbrella underwear van vase violin washing_machine watermelon "
    "waterslide whale wheel windmill wine_bottle wine_glass wristwatch yoga zebra zigzag").split()

PACS = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("office31", tuple(OFFICE31), ("amazon", "dslr", "webcam"), 25, _splits(25, 20, 28, 15, (25, 28))),
    Preset("officehome", tuple(OFFICEHOME), ("Art", "Clipart", "Product", "RealWorld"), 50,
           _splits(50, 35, 60, 35, (50, 60))),
    Preset("visda", tuple(VISDA), ("train", "validation"), 8, _splits(8, 6, 10, 6, (8, 10))),
    Preset("domainnet", tuple(DOMAINNET), ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"), 300,
           _splits(300, 250, 330, 250, (300, 330))),
    # Shapes (ueo_core.shapes): the default prior names 6 shapes; the other demo shapes are the unknowns
    Preset("shapes", SHAPES, DOMAINS, len(DEFAULT_PRIOR),
           {"CDA": _r((0, len(DEFAULT_PRIOR))), "PDA": _r((0, 4)), "ODA": _r((0, len(SHAPES))),
            "OPDA": _r((0, 4), (len(DEFAULT_PRIOR), len(SHAPES)))}),
    # PACS (not in the UEO paper): the first 5 classes alphabetically known, horse... see shared/data/README.md
    Preset("pacs", PACS, ("art_painting", "cartoon", "photo", "sketch"), 5,
           {"CDA": _r((0, 5)), "PDA": _r((0, 3)), "ODA": _r((0, 7)), "OPDA": _r((0, 3), (5, 7))}),
]}

assert len(OFFICE31) == 31 and len(OFFICEHOME) == 65 and len(VISDA) == 12 and len(DOMAINNET) == 345


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise ValueError(f"Unknown preset '{name}'. Choose one of: {', '.join(PRESETS)}") from None
