"""The world's functions, by domain. Each line of phrasing holds "|"-separated alternatives:
plain intents, then paraphrase intents, then one ``req``/``opt`` per parameter (plain
phrases, paraphrase phrases). Functions in one domain have look-alike names on purpose
(``convert_length`` / ``convert_weight``): they are each other's hardest distractors.
The lookups at the end (by name, by domain, intent words) are what the rest of the package reads.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from toolduel.schema import Tool
from toolduel.world.catalog import POOL_ENUMS, Function, fn, opt, req
from toolduel.world.surface import surface_forms

CITY = ("in {v}|for {v}", "over in {v}|around {v}")

FUNCTIONS = (
    # weather
    fn("get_current_weather", "weather", "Current weather conditions for a city",
       "Get the current weather|Show the current weather", "How is the weather right now|What is it like outside right now",
       req("city", "string", "city", *CITY), opt("unit", "string", "temp_unit", "in {v}", "celsius", "using {v}")),
    fn("get_weather_forecast", "weather", "Daily weather forecast for the coming days",
       "Get the weather forecast|Show the forecast", "What will the weather do|Tell me the outlook",
       req("city", "string", "city", *CITY), req("days", "integer", "days", "for {v} days", "over the next {v} days"),
       opt("unit", "string", "temp_unit", "in {v}", "celsius", "using {v}")),
    fn("get_air_quality", "weather", "Air quality index for a city",
       "Get the air quality|Check the air quality", "How clean is the air|Is the air safe to breathe",
       req("city", "string", "city", *CITY)),
    fn("get_uv_index", "weather", "UV index for a city on a date",
       "Get the UV index|Check the UV index", "How strong is the sun|Do I need sunscreen",
       req("city", "string", "city", *CITY), opt("date", "string", "date", "on {v}", None, "for {v}")),
    fn("get_sunrise_time", "weather", "Sunrise and sunset times for a city on a date",
       "Get the sunrise time|Find the sunrise time", "When does the sun come up|What time is dawn",
       req("city", "string", "city", *CITY), req("date", "string", "date", "on {v}", "for {v}")),
    # arithmetic
    fn("add_numbers", "arithmetic", "Add two numbers",
       "Add|Compute the sum of", "What do I get when I combine|Sum up",
       req("a", "number", "value", "{v}"), req("b", "number", "value", "and {v}", "plus {v}")),
    fn("multiply_numbers", "arithmetic", "Multiply two numbers",
       "Multiply|Compute the product of", "What is|Work out",
       req("a", "number", "value", "{v}"), req("b", "number", "value", "by {v}|and {v}", "times {v}")),
    fn("calculate_percentage", "arithmetic", "A percentage of a value",
       "Calculate the percentage|Compute the percentage", "Work out the share|How much is the portion",
       req("percent", "number", "percent", "of {v} percent", "that is {v}%"),
       req("value", "number", "value", "of {v}", "out of {v}")),
    fn("compute_square_root", "arithmetic", "Square root of a number",
       "Compute the square root of|Get the square root of", "What number squared gives|Find the root of",
       req("number", "number", "value", "{v}")),
    fn("round_number", "arithmetic", "Round a number to some decimal places",
       "Round|Round off", "Tidy up the digits of|Shorten",
       req("number", "number", "amount", "{v}"), opt("decimals", "integer", "decimals", "to {v} decimal places", 0,
                                                        "keeping {v} decimals")),
    fn("compute_average", "arithmetic", "Mean of a list of numbers",
       "Compute the average of|Get the mean of", "What is the typical value of|Find the middle value of",
       req("numbers", "array", "numbers", "{v}")),
    # units
    fn("convert_length", "units", "Convert a length between units",
       "Convert the length|Convert the distance", "How long is|What is the distance of",
       req("value", "number", "measure", "of {v}", "{v}"), req("from_unit", "string", "length_unit", "from {v}", "in {v}"),
       req("to_unit", "string", "length_unit", "to {v}", "expressed in {v}")),
    fn("convert_weight", "units", "Convert a weight between units",
       "Convert the weight|Convert the mass", "How heavy is|What does it weigh,",
       req("value", "number", "measure", "of {v}", "{v}"), req("from_unit", "string", "weight_unit", "from {v}", "in {v}"),
       req("to_unit", "string", "weight_unit", "to {v}", "expressed in {v}")),
    fn("convert_volume", "units", "Convert a volume between units",
       "Convert the volume|Convert the amount of liquid", "How much liquid is|What is the capacity of",
       req("value", "number", "measure", "of {v}", "{v}"), req("from_unit", "string", "volume_unit", "from {v}", "in {v}"),
       req("to_unit", "string", "volume_unit", "to {v}", "expressed in {v}")),
    fn("convert_temperature", "units", "Convert a temperature between scales",
       "Convert the temperature|Convert degrees", "How warm is|What reading is",
       req("value", "number", "measure", "of {v}", "{v}"), req("from_scale", "string", "temp_scale", "from {v}", "in {v}"),
       req("to_scale", "string", "temp_scale", "to {v}", "expressed in {v}")),
    fn("convert_speed", "units", "Convert a speed in km per hour to miles per hour",
       "Convert the speed|Convert km per hour to miles per hour", "How fast in mph is|What is the mph of",
       req("kmh", "number", "measure", "of {v} km per hour", "{v} km an hour")),
    # calendar
    fn("create_event", "calendar", "Add an event to the calendar",
       "Create a calendar event|Add an event", "Put something in my diary|Block out time",
       req("title", "string", "event_title", "called {v}|named {v}", "for my {v}"),
       req("date", "string", "date", "on {v}", "for {v}"), req("time", "string", "time", "at {v}", "starting {v}"),
       opt("duration_minutes", "integer", "minutes", "lasting {v} minutes", 60, "for {v} minutes")),
    fn("list_events", "calendar", "List the calendar events on a date",
       "List my events|Show my calendar", "What is on my plate|What do I have going on",
       req("date", "string", "date", "on {v}", "for {v}")),
    fn("delete_event", "calendar", "Remove an event from the calendar",
       "Delete the event|Remove the event", "Cancel my|Take off my calendar the",
       req("title", "string", "event_title", "called {v}|named {v}", "{v}"), req("date", "string", "date", "on {v}", "planned for {v}")),
    fn("set_reminder", "calendar", "Set a reminder at a time",
       "Set a reminder|Create a reminder", "Nudge me|Make sure I remember",
       req("text", "string", "reminder", "to {v}", "to {v}"), req("time", "string", "time", "at {v}", "around {v}"),
       opt("date", "string", "date", "on {v}", None, "on {v}")),
    fn("get_day_of_week", "calendar", "Day of the week for a date",
       "Get the day of the week|Find the weekday", "Which day will it be|What weekday falls",
       req("date", "string", "date", "for {v}", "on {v}")),
    fn("count_days_between", "calendar", "Number of days between two dates",
       "Count the days|Compute the number of days", "How long is it|How many days pass",
       req("start_date", "string", "date", "from {v}", "between {v}"), req("end_date", "string", "date", "to {v}", "and {v}")),
    # shopping
    fn("search_products", "shopping", "Search the store catalog",
       "Search for products|Find products", "Look around the shop|Help me shop",
       req("query", "string", "product", "matching {v}", "for {v}"),
       opt("max_price", "number", "price", "under {v} dollars", None, "costing at most {v} dollars"),
       opt("sort_by", "string", "sort_order", "sorted by {v}", "relevance", "ordered by {v}")),
    fn("add_to_cart", "shopping", "Add a product to the shopping cart",
       "Add to my cart|Put in my cart", "I want to buy|Grab me",
       req("product", "string", "product", "the {v}", "the {v}"),
       opt("quantity", "integer", "small", "quantity {v}", 1, "{v} of them")),
    fn("track_order", "shopping", "Delivery status of an order",
       "Track my order|Get the status of order", "Where is my package|Has it shipped yet,",
       req("order_id", "string", "order_id", "{v}", "number {v}")),
    fn("get_product_reviews", "shopping", "Customer reviews for a product",
       "Get the reviews|Show the reviews", "What do buyers think|Are people happy",
       req("product", "string", "product", "for the {v}", "about the {v}"),
       opt("min_rating", "integer", "rating", "with at least {v} stars", None, "rated {v} stars or more")),
    fn("apply_coupon", "shopping", "Apply a discount code to the cart",
       "Apply the coupon|Use the discount code", "Knock some money off with|Redeem",
       req("code", "string", "coupon", "{v}", "code {v}")),
    # travel
    fn("search_flights", "travel", "Search flights between two cities on a date",
       "Search for flights|Find flights", "Get me a plane|Look for a way to fly",
       req("origin", "string", "city", "from {v}", "leaving {v}"), req("destination", "string", "city", "to {v}", "going to {v}"),
       req("date", "string", "date", "on {v}", "departing {v}"),
       opt("passengers", "integer", "guests", "for {v} passengers", 1, "for {v} people"),
       opt("cabin_class", "string", "cabin", "in {v} class", "economy", "flying {v}")),
    fn("book_hotel", "travel", "Book a hotel room",
       "Book a hotel|Reserve a hotel room", "Find me somewhere to stay|Get me a room",
       req("city", "string", "city", "in {v}", "over in {v}"), req("check_in", "string", "date", "from {v}", "arriving {v}"),
       req("nights", "integer", "days", "for {v} nights", "staying {v} nights"),
       opt("guests", "integer", "guests", "for {v} guests", 1, "for {v} people")),
    fn("get_flight_status", "travel", "Live status of a flight",
       "Get the flight status|Check the status of flight", "Is my flight on time|Has it departed, flight",
       req("flight_number", "string", "flight", "{v}", "number {v}")),
    fn("rent_car", "travel", "Rent a car in a city",
       "Rent a car|Book a rental car", "Get me wheels|I need to drive",
       req("city", "string", "city", "in {v}", "around {v}"), req("pickup_date", "string", "date", "from {v}", "starting {v}"),
       req("days", "integer", "days", "for {v} days", "over {v} days"),
       opt("car_class", "string", "car_class", "a {v}", "compact", "preferably a {v}")),
    fn("find_attractions", "travel", "Tourist attractions in a city",
       "Find attractions|List things to see", "What is worth visiting|Where should I go sightseeing",
       req("city", "string", "city", *CITY), opt("category", "string", "attraction", "of type {v}", None, "like a {v}")),
    # messaging
    fn("send_message", "messaging", "Send a text message to a contact",
       "Send a message|Text", "Let someone know|Drop a line",
       req("recipient", "string", "person", "to {v}", "for {v}"), req("message", "string", "message", "saying {v}", "that says {v}")),
    fn("send_email", "messaging", "Send an email",
       "Send an email|Email", "Write a mail|Shoot a note",
       req("to", "string", "email", "to {v}", "addressed to {v}"), req("subject", "string", "subject", "with subject {v}", "about {v}"),
       opt("urgent", "boolean", "flag", "marked urgent", False, "flagged as urgent")),
    fn("send_group_message", "messaging", "Send one message to several contacts",
       "Send a group message|Message the group", "Let everyone know|Tell the whole gang",
       req("recipients", "array", "people", "to {v}", "including {v}"), req("message", "string", "message", "saying {v}", "that says {v}")),
    fn("schedule_message", "messaging", "Send a text message later, at a set time",
       "Schedule a message|Queue a text", "Remind someone later|Send later a note",
       req("recipient", "string", "person", "to {v}", "for {v}"), req("message", "string", "message", "saying {v}", "that says {v}"),
       req("time", "string", "time", "at {v}", "around {v}")),
    fn("get_unread_messages", "messaging", "Fetch unread messages",
       "Get my unread messages|Show unread messages", "What did I miss|Any new texts",
       opt("limit", "integer", "limit", "up to {v} of them", 10, "at most {v}")),
    # finance
    fn("convert_currency", "finance", "Convert an amount between currencies",
       "Convert the amount|Exchange", "How much is|What would I get for",
       req("amount", "number", "amount", "{v}"), req("from_currency", "string", "currency", "from {v}", "in {v}"),
       req("to_currency", "string", "currency", "to {v}", "in terms of {v}")),
    fn("get_stock_price", "finance", "Latest share price for a ticker",
       "Get the stock price of|Quote the share price of", "How is the market treating|What is trading at for",
       req("symbol", "string", "stock", "{v}", "ticker {v}")),
    fn("calculate_loan_payment", "finance", "Monthly payment on a loan",
       "Calculate the loan payment|Compute the monthly payment", "What would I pay each month|How much per month",
       req("principal", "number", "amount", "on {v} dollars", "borrowing {v} dollars"),
       req("annual_rate", "number", "rate", "at {v} percent", "with {v}% interest"),
       req("years", "integer", "years", "over {v} years", "for {v} years")),
    fn("calculate_tip", "finance", "Tip for a restaurant bill",
       "Calculate the tip|Compute the tip", "How much should I leave|What gratuity fits",
       req("bill_amount", "number", "price", "on a bill of {v} dollars", "for {v} dollars"),
       opt("tip_percent", "integer", "percent", "at {v} percent", 15, "leaving {v}%"),
       opt("split", "integer", "guests", "split {v} ways", 1, "shared by {v} people")),
    fn("transfer_money", "finance", "Send money to a contact",
       "Transfer money|Send money", "Pay back|Wire some cash",
       req("recipient", "string", "person", "to {v}", "for {v}"), req("amount", "number", "amount", "of {v}", "worth {v}"),
       opt("currency", "string", "currency", "in {v}", "USD", "paid in {v}")),
    # music
    fn("play_song", "music", "Play a song",
       "Play the song|Start playing", "Put on|I want to hear",
       req("title", "string", "song", "{v}", "{v}"), opt("artist", "string", "artist", "by {v}", None, "from {v}")),
    fn("create_playlist", "music", "Create a playlist",
       "Create a playlist|Make a playlist", "Start a mix|Build a collection",
       req("name", "string", "playlist", "called {v}", "named {v}"), opt("songs", "array", "songs", "with {v}", None, "holding {v}")),
    fn("set_volume", "music", "Set the playback volume",
       "Set the volume|Change the volume", "Make it louder or softer|Adjust the sound",
       req("level", "integer", "level", "to {v}", "to level {v}")),
    fn("search_artist", "music", "Look up an artist",
       "Search for the artist|Look up the artist", "Tell me about the musician|Who is the band",
       req("name", "string", "artist", "{v}", "{v}")),
    fn("play_radio", "music", "Play a radio station of a genre",
       "Play the radio|Start a radio station", "Put on some tunes|I want background music",
       req("genre", "string", "genre", "of {v}", "with {v}")),
    # smart home
    fn("set_thermostat", "smart_home", "Set the thermostat temperature",
       "Set the thermostat|Change the thermostat", "Make it warmer or cooler|Adjust the heating",
       req("temperature", "integer", "temperature", "to {v} degrees", "at {v} degrees"),
       opt("room", "string", "room", "in the {v}", None, "for the {v}")),
    fn("turn_on_lights", "smart_home", "Turn on the lights in a room",
       "Turn on the lights|Switch on the lights", "Light up|Brighten up",
       req("room", "string", "room", "in the {v}", "the {v}"),
       opt("brightness", "integer", "level", "at {v} percent", 100, "dimmed to {v}%")),
    fn("lock_door", "smart_home", "Lock a door",
       "Lock the door|Lock", "Secure|Make sure nobody can open",
       req("door", "string", "door", "the {v}", "the {v}")),
    fn("start_vacuum", "smart_home", "Start the robot vacuum",
       "Start the vacuum|Run the robot vacuum", "Clean the floors|Tidy up the dust",
       opt("room", "string", "room", "in the {v}", None, "in the {v}")),
    fn("set_alarm", "smart_home", "Set an alarm clock",
       "Set an alarm|Create an alarm", "Wake me up|Ring me",
       req("time", "string", "time", "for {v}", "at {v}"), opt("label", "string", "reminder", "labeled {v}", None, "to {v}")),
    # food
    fn("find_restaurants", "food", "Find restaurants in a city",
       "Find restaurants|Search restaurants", "Where can I eat|Recommend a place to eat",
       req("city", "string", "city", *CITY), req("cuisine", "string", "cuisine", "serving {v} food", "with {v} food"),
       opt("price_level", "string", "price_level", "that are {v}", None, "on the {v} side")),
    fn("order_food", "food", "Order dishes from a restaurant for delivery",
       "Order food|Place a food order", "Get me delivery|I am hungry, bring me",
       req("restaurant", "string", "restaurant", "from {v}", "at {v}"), req("dishes", "array", "dishes", "with {v}", "including {v}")),
    fn("get_recipe", "food", "Recipe for a dish",
       "Get a recipe|Find a recipe", "How do I cook|Teach me to make",
       req("dish", "string", "dish", "for {v}", "{v}"), opt("servings", "integer", "small", "for {v} servings", 2, "to feed {v}")),
    fn("translate_text", "language", "Translate text into another language",
       "Translate|Translate the text", "How do you say|What is the way to say",
       req("text", "string", "text", "{v}", "{v}"), req("target_language", "string", "language", "into {v}", "in {v}")),
    fn("define_word", "language", "Dictionary definition of a word",
       "Define the word|Look up the definition of", "What does it mean,|Explain the meaning of",
       req("word", "string", "word", "{v}", "{v}")),
    fn("get_news", "language", "Latest news headlines on a topic",
       "Get the news|Show the headlines", "What is happening|Catch me up",
       req("topic", "string", "topic", "about {v}", "in {v}"), opt("limit", "integer", "limit", "limited to {v} stories", 5, "just {v} stories")),
)


# ----------------------------------------------------------------------------- lookups


@lru_cache(maxsize=1)
def all_functions() -> tuple[Function, ...]:
    names = [f.name for f in FUNCTIONS]
    if len(set(names)) != len(names):
        raise ValueError("duplicate function names in the world catalog")
    return FUNCTIONS


@lru_cache(maxsize=1)
def functions_by_name() -> dict[str, Function]:
    return {f.name: f for f in all_functions()}


def domains() -> dict[str, list[Function]]:
    out: dict[str, list[Function]] = {}
    for function in all_functions():
        out.setdefault(function.domain, []).append(function)
    return out


def world_tools() -> list[Tool]:
    """Every function of the world as a :class:`Tool`."""
    return [f.tool() for f in all_functions()]


# ----------------------------------------------------------------------------- intent words

# A word in the phrasings of more functions than this says little about which one is meant
# ("get", "show", "the"), so it does not count as naming a function.
_COMMON_WORD_FUNCTIONS = 4
_FUNCTION_WORDS = frozenset({"and", "also", "does", "for", "from", "how", "into", "out", "tell", "that", "the",
                             "then", "this", "using", "what", "when", "will", "with"})


# Pools whose values say what is being measured: "kilometers" asks for a length conversion, "euros" for
# a currency one.
_MEASURE_POOLS = ("length_unit", "weight_unit", "volume_unit", "temp_scale", "currency")


def _phrasing_words(function: Function) -> set[str]:
    texts = [*function.intents, *function.alt_intents,
             *(phrase for p in function.params for phrase in (*p.phrases, *p.alt_phrases))]
    words = {w for text in texts for w in re.findall(r"[a-z]+", text.replace("{v}", " ").lower())
             if len(w) >= 3 and w not in _FUNCTION_WORDS}
    units = [v for p in function.params if p.pool in _MEASURE_POOLS and p.required for v in POOL_ENUMS[p.pool]]
    return words | {w for unit in units for form in (unit, *surface_forms(unit))
                    for w in re.findall(r"[a-z]+", form.lower()) if len(w) >= 2}


@lru_cache(maxsize=1)
def _intent_word_table() -> dict[str, frozenset[str]]:
    words = {f.name: _phrasing_words(f) for f in all_functions()}
    spread = Counter(word for found in words.values() for word in found)
    return {name: frozenset(w for w in found if spread[w] <= _COMMON_WORD_FUNCTIONS) for name, found in words.items()}


def intent_words(name: str) -> frozenset[str] | None:
    """The words of a world function's phrasings that few other functions use ("vacuum",
    "forecast", "times"): a query asking for the function says at least one of them. None
    for a name the world does not know."""
    return _intent_word_table().get(name) or None
