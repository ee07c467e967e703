"""The offline answerer quotes its sources, and only what answers the question."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Sequence

import pytest

from bookchat.content.chunker import chunk_document
from bookchat.providers.base import SELECTION_TITLE, ChatPrompt, Finish, Source
from bookchat.providers.embeddings import OpenAIEmbedder
from bookchat.providers.extractive import (
    NO_CONTEXT_ANSWER,
    NOTHING_QUOTABLE_ANSWER,
    ExtractiveChatModel,
    quoted_passages,
)
from bookchat.providers.quotable import Sentence, plain_text, read_passage
from bookchat.providers.ranking import Ranking
from tests.fakes.openai_server import FakeOpenAIServer

NODES = Source(
    index=1,
    title="Nodes",
    text=(
        "A node is one process in a ROS 2 graph. Nodes publish messages on topics. "
        "Each node should do one job well.\n\n```python\nnode = Node('talker')\n```\n"
        "Subscribers receive every message published on their topic."
    ),
)
GAZEBO = Source(
    index=2,
    title="Simulation",
    text="Gazebo simulates physics, sensors and actuators. It runs robots before hardware exists.",
)
TOPICS = """## Topics

A topic is a named bus over which nodes exchange messages of one type. Every topic has a name.
The command `ros2 topic list` prints the topics of the running graph.
"""
PUBLISHER_CODE = """### Writing a publisher

A publisher belongs to a node. To create one, call `create_publisher` in the node's constructor:

```python
self.pub = self.create_publisher(String, "chatter", 10)
self.timer = self.create_timer(0.5, self.on_timer)
```

The last argument is the queue depth.
"""


def source(text: str, index: int = 1, title: str = "Chapter") -> Source:
    return Source(index=index, title=title, text=text)


def answer(question: str, *sources: Source) -> str:
    return ExtractiveChatModel().answer(question, sources)


def selection(text: str) -> Source:
    return Source(index=1, title=SELECTION_TITLE, text=text)


def sentences_of(text: str) -> list[str]:
    """The quoted sentences of an answer, without their markers."""
    return [quote for quote, _ in quoted_passages(text)]


class TestBookAnswers:
    def test_without_sources_says_it_is_offline(self) -> None:
        assert answer("What is ROS 2?") == NO_CONTEXT_ANSWER

    def test_picks_matching_sentences_with_markers(self) -> None:
        text = answer("What does Gazebo simulate?", NODES, GAZEBO)
        assert text == "Gazebo simulates physics, sensors and actuators. [2]"

    def test_a_question_without_a_topic_gets_the_best_source_opening(self) -> None:
        text = answer("explain this", NODES, GAZEBO)
        assert (
            text
            == "A node is one process in a ROS 2 graph. [1] Nodes publish messages on topics. [1]"
        )

    def test_the_definition_comes_before_the_sentences_around_it(self) -> None:
        chapter = source(
            "## Topics\n\nTopics appear everywhere in ROS 2. A topic is a named bus over which "
            "nodes exchange messages of one type. Every topic has a name. Topic names start "
            "with a slash. Each topic has one message type."
        )
        text = answer("What is a topic?", chapter)
        assert text.startswith(
            "A topic is a named bus over which nodes exchange messages of one type. [1]"
        )

    def test_a_definition_starts_with_what_it_defines(self) -> None:
        chapter = source(
            "In a ROS 2 system a VLA is usually one node among many. A VLA is a model that "
            "turns camera images and an instruction into robot actions."
        )
        text = answer("What is a VLA?", chapter)
        assert text.startswith("A VLA is a model that turns camera images")

    def test_the_definition_asked_for_comes_before_other_definitions(self) -> None:
        urdf = source("URDF is an XML format that describes the links and joints of a robot.", 1)
        xacro = source("Xacro is a macro language for writing robot descriptions.", 2)
        text = answer("What is Xacro and why use it instead of plain URDF?", urdf, xacro)
        assert text.startswith("Xacro is a macro language for writing robot descriptions. [2]")

    def test_a_two_part_question_starts_with_the_definition(self) -> None:
        nav2 = source(
            "## Nav2 for humanoids\n\nFor humanoid robots, Nav2 must be adapted to handle "
            "bipedal locomotion. Nav2 is the ROS 2 navigation stack that plans collision-free "
            "paths."
        )
        text = answer("What is Nav2 and what does it need to handle for humanoids?", nav2)
        assert text.startswith("Nav2 is the ROS 2 navigation stack that plans collision-free")
        assert "bipedal locomotion. [1]" in text

    def test_a_sentence_that_asks_in_order_to_define_is_quoted(self) -> None:
        chapter = source(
            "## Forward and Inverse Kinematics\n\nForward kinematics asks: given all joint "
            "angles, where is each part of the robot? Inverse kinematics asks the reverse: which "
            "joint angles put the hand at a desired pose? Why does this matter for humanoids?"
        )
        text = answer("What is inverse kinematics?", chapter)
        assert text.startswith(
            "Inverse kinematics asks the reverse: which joint angles put the hand at a desired "
            "pose? [1]"
        )
        assert "Why does this matter" not in text

    def test_a_defining_sentence_counts_without_the_exact_word(self) -> None:
        top = source(
            "## Publishers\n\nA publisher is the part of a node that sends messages on a topic. "
            "It never waits for a reader.",
        )
        other = source("Publishers should be created in the constructor.", index=2)
        text = answer("What are publishers?", top, other)
        assert text.startswith(
            "A publisher is the part of a node that sends messages on a topic. [1]"
        )

    def test_a_definition_that_introduces_a_list_is_quoted_with_it(self) -> None:
        urdf = source(
            "## URDF\n\nA URDF file is an XML document that defines:\n"
            "- **Links**: rigid body segments\n- **Joints**: connections between links\n"
            "- **Inertial properties**: mass and inertia\n\n## Best Practices\n\n"
            "1. **Version control URDF files** - Track changes carefully\n"
        )
        text = answer("What are links, joints and inertial properties in a URDF file?", urdf)
        assert text == (
            "A URDF file is an XML document that defines: [1]\n\n"
            "- Links: rigid body segments\n- Joints: connections between links\n"
            "- Inertial properties: mass and inertia\n\n[1]"
        )
        assert sentences_of(text) == [
            "A URDF file is an XML document that defines:",
            "Links: rigid body segments",
            "Joints: connections between links",
            "Inertial properties: mass and inertia",
        ]
        assert all(quote in plain_text(urdf.text) for quote in sentences_of(text))

    def test_a_sentence_after_a_quoted_list_starts_a_paragraph(self) -> None:
        urdf = source(
            "A URDF file is an XML document that defines:\n- **Links**: the rigid bodies\n"
            "- **Joints**: the connections between links\n",
            1,
        )
        more = source("URDF files describe a robot for simulators and planners.", 2)
        text = answer("What is a URDF file?", urdf, more)
        assert text == (
            "A URDF file is an XML document that defines: [1]\n\n"
            "- Links: the rigid bodies\n- Joints: the connections between links\n\n[1]\n\n"
            "URDF files describe a robot for simulators and planners. [2]"
        )

    def test_items_of_a_list_with_a_lead_in_are_quoted_as_the_whole_list(self) -> None:
        modules = source(
            "## Conclusion\n\nThis capstone project integrates all course modules:\n"
            "- **Module 1**: ROS 2 communication and URDF modeling\n"
            "- **Module 2**: Simulation and sensor processing\n"
            "- **Module 3**: GPU-accelerated perception with Isaac\n"
            "- **Module 4**: LLM-based planning and voice control\n"
        )
        # Two modules answer; the reader sees them in the whole list, not torn out of it.
        text = answer("Which modules cover simulation and perception?", modules)
        assert text == (
            "This capstone project integrates all course modules: [1]\n\n"
            "- Module 1: ROS 2 communication and URDF modeling\n"
            "- Module 2: Simulation and sensor processing\n"
            "- Module 3: GPU-accelerated perception with Isaac\n"
            "- Module 4: LLM-based planning and voice control\n\n[1]"
        )
        # One item that answers is quoted alone.
        assert answer("Which module covers GPU-accelerated perception?", modules) == (
            "Module 3: GPU-accelerated perception with Isaac [1]"
        )

    def test_a_list_whose_items_the_question_names_is_quoted_whole(self) -> None:
        qos = source(
            "### Quality of Service\n\nQoS policies determine how messages are delivered:\n\n"
            "- **Reliability**: Best-effort vs. reliable delivery\n"
            "- **Durability**: Transient-local vs. volatile data\n"
            "- **History**: Keep-last vs. keep-all message buffering\n\n"
            "Choose QoS policies per topic, not per node.\n"
        )
        text = answer("What are the reliability, durability and history QoS policies?", qos)
        assert text.startswith(
            "QoS policies determine how messages are delivered: [1]\n\n"
            "- Reliability: Best-effort vs. reliable delivery\n"
            "- Durability: Transient-local vs. volatile data\n"
            "- History: Keep-last vs. keep-all message buffering\n\n[1]"
        )

    def test_a_list_is_offered_whole_only_when_its_lead_in_is_about_the_question(self) -> None:
        # "Build a system that can:" shares no word with the question: that its items name
        # navigation and manipulation does not make the list an answer (the textbook's main
        # controller code answers this question).
        goals = source(
            "## Goals\n\nBuild a system that can:\n\n"
            "- Navigate autonomously - Use Nav2 for path planning\n"
            "- Manipulate objects - Grasp and place objects using vision\n"
        )
        question = "How does the controller dispatch each action to navigation or manipulation?"
        offered = [r for r in Ranking(question, [goals]).candidates if r.sentence.items]
        assert offered == []
        tasks = source(goals.text.replace("Build a system that can:", "The controller can:"))
        offered = [r for r in Ranking(question, [tasks]).candidates if r.sentence.items]
        assert [r.text for r in offered] == ["The controller can:"]

    def test_a_definition_that_introduces_code_is_quoted_with_it(self) -> None:
        # "Organize with Xacro - ..." only names Xacro; the book says what Xacro is where it
        # introduces its example.
        xacro = source(
            "## Xacro\n\nXacro extends URDF with macros and parameters:\n\n"
            '```xml\n<xacro:property name="leg_length" value="0.8"/>\n```\n\n'
            "## Best Practices\n\n1. **Organize with Xacro** - Modularize complex robots\n"
        )
        text = answer("What is Xacro?", xacro)
        assert text.startswith(
            "Xacro extends URDF with macros and parameters: [1]\n\n```xml\n<xacro:property"
        )

    def test_what_a_sentence_defines_stops_at_a_preposition(self) -> None:
        # "Built-in support for DDS Security enables..." defines support, not DDS.
        security = source("Built-in support for DDS Security enables encrypted communication.")
        dds = source(
            "## DDS\n\nThe Data Distribution Service (DDS) is a standard protocol that "
            "provides:\n\n```python\nqos = QoSProfile(depth=10)\n```\n",
            2,
        )
        text = answer("What is DDS?", security, dds)
        assert text.startswith("The Data Distribution Service (DDS) is a standard protocol")

    def test_quiz_options_are_not_quoted(self) -> None:
        chapter = source(
            TOPICS + "\n## Quiz\n\n1. Which command prints the topics of a graph?\n"
            "   A) `ros2 topic list` B) `ros2 node list` C) `ros2 run`\n"
        )
        text = answer("Which command prints the topics?", chapter)
        assert text == "The command ros2 topic list prints the topics of the running graph. [1]"

    def test_inline_quiz_options_are_not_quoted_outside_a_quiz_section(self) -> None:
        chapter = source(
            "## Listing topics\n\nWhich command lists topics? A) `ros2 topic list` "
            "B) `ros2 node list`\n\nThe `ros2 topic list` command lists the topics of a graph."
        )
        text = answer("Which command lists topics?", chapter)
        assert text == "The ros2 topic list command lists the topics of a graph. [1]"

    @pytest.mark.parametrize(
        "heading",
        ["Exercises", "Check your understanding", "Lab checklist", "Self-check", "Quiz 2"],
    )
    def test_exercise_and_checklist_sections_are_not_quoted(self, heading: str) -> None:
        chapter = source(
            TOPICS + f"\n## {heading}\n\nList the topics of your robot with the topic command "
            "and write down each topic of the graph.\n"
        )
        text = answer("How do I list the topics of the graph?", chapter)
        assert "write down" not in text
        assert "ros2 topic list" in text

    def test_a_heading_that_only_sounds_like_an_exercise_is_content(self) -> None:
        chapter = source(
            "## Test your robot in simulation\n\nGazebo runs the robot's nodes against "
            "simulated physics before any hardware exists."
        )
        text = answer("Where can the robot's nodes run before hardware exists?", chapter)
        assert text.startswith("Gazebo runs the robot's nodes against simulated physics")

    def test_checklist_items_are_not_quoted(self) -> None:
        chapter = source(
            "## Topics\n\n- [ ] The topic list shows every topic of the robot\n"
            "- [x] Each topic was echoed once\n\n"
            "Each topic carries messages of exactly one type."
        )
        text = answer("What does each topic of the robot carry?", chapter)
        assert text == "Each topic carries messages of exactly one type. [1]"

    def test_list_items_are_separate_sentences(self) -> None:
        middleware = source(
            "DDS provides several features.\n\n"
            "- **Real-time communication** for time-critical control\n"
            "- **Quality of Service** policies for reliable delivery\n"
            "- **Discovery** of nodes without a master\n"
        )
        text = answer("Which policies make delivery reliable?", middleware)
        assert text == "Quality of Service policies for reliable delivery [1]"

    def test_markup_is_stripped_and_code_text_kept(self) -> None:
        chapter = source(
            "**Launch files** start several nodes at once; see [the launch chapter](launch.md) "
            "and run `ros2 launch` with the file's name.<br/> ![diagram](launch.png)"
        )
        text = answer("What do launch files start?", chapter)
        assert text == (
            "Launch files start several nodes at once; see the launch chapter and run "
            "ros2 launch with the file's name. [1]"
        )

    def test_how_to_questions_get_the_whole_code_block(self) -> None:
        text = answer("How do I create a publisher?", source(PUBLISHER_CODE))
        assert text == (
            "A publisher belongs to a node. [1] "
            "To create one, call create_publisher in the node's constructor: [1]\n\n"
            '```python\nself.pub = self.create_publisher(String, "chatter", 10)\n'
            "self.timer = self.create_timer(0.5, self.on_timer)\n```\n[1]"
        )

    def test_code_that_indexes_a_list_is_quoted_whole(self) -> None:
        detection = source(
            "### Reading a detection\n\nTake the first result of each detection message:\n\n"
            "```python\npose = msg.detections[0].results[1].pose\n```\n"
        )
        text = answer("How do I read the pose of a detection?", detection)
        assert quoted_passages(text) == [
            ("Take the first result of each detection message:", 1),
            ("pose = msg.detections[0].results[1].pose", 1),
        ]

    def test_what_questions_get_prose_not_code(self) -> None:
        text = answer("What is the last argument of create_publisher?", source(PUBLISHER_CODE))
        assert "```" not in text
        assert text == "The last argument is the queue depth. [1]"

    def test_a_section_that_is_all_code_answers_before_weak_prose_of_a_worse_source(
        self,
    ) -> None:
        mismatch = source(
            "### CUDA Version Mismatch\n\n```bash\n# Check the CUDA version\nnvcc --version\n"
            "nvidia-smi  # shows the driver's CUDA version\n"
            "sudo apt install cuda-toolkit-12-3\n```\n",
            1,
            "Workstations",
        )
        kit = source(
            "- **Compute**: NVIDIA Jetson Orin NX (optional)\n- **Weight**: 15 kg\n", 2, "Robots"
        )
        question = "What do I do if nvcc and nvidia-smi report different CUDA versions?"
        text = answer(question, mismatch, kit)
        assert text.startswith("```bash\n# Check the CUDA version\nnvcc --version")
        assert text.endswith("[1]")
        assert "Jetson" not in text

    def test_the_best_source_s_code_answers_before_a_worse_source_s_one_line_summary(
        self,
    ) -> None:
        # The section that holds the numbers ranks first; a best-practices bullet that restates
        # the question's words says nothing the reader asked for.
        timesteps = source(
            "### Timestep Selection\n\n```python\n# Trade-off between accuracy and speed\n"
            "TIMESTEPS = {\n    'high_accuracy': 0.0001,  # 10kHz - Very slow\n"
            "    'standard': 0.001,  # 1kHz - Recommended\n"
            "    'fast': 0.01,  # 100Hz - Less accurate\n}\n```\n",
            1,
            "Physics Simulation",
        )
        practices = source(
            "## Best Practices\n\n1. **Use appropriate timesteps**: Balance accuracy and speed\n"
            "2. **Validate against reality**: Compare with real robot data\n",
            2,
            "Physics Simulation",
        )
        question = (
            "What simulation timestep is recommended as a balance between accuracy and speed?"
        )
        text = answer(question, timesteps, practices)
        assert "'standard': 0.001,  # 1kHz - Recommended" in text
        assert text.endswith("[1]")
        assert "[2]" not in text

    def test_a_what_is_question_keeps_a_worse_source_s_sentence_over_the_best_source_s_code(
        self,
    ) -> None:
        node_code = source(
            "## Basic ROS 2 Python Node\n\n```python\nimport rclpy\nfrom rclpy.node import Node\n\n"
            "class VisionProcessor(Node):\n    def __init__(self):\n"
            "        super().__init__('vision_processor')\n```\n",
            1,
            "Python-ROS 2 Bridging",
        )
        discovery = source(
            "### Discovery\n\nROS 2 nodes discover each other on the network without a central "
            "master.\n",
            2,
            "Middleware",
        )
        text = answer("What is a ROS 2 node?", node_code, discovery)
        assert "```" not in text
        assert text == (
            "ROS 2 nodes discover each other on the network without a central master. [2]"
        )

    def test_code_is_read_by_the_words_of_its_identifiers(self) -> None:
        materials = source(
            "### Physically-Based Rendering\n\n```csharp\npublic class PBRMaterialController\n{\n"
            "    void ConfigurePBRMaterial()\n    {\n"
            '        robotMaterial.SetFloat("_Metallic", 0.8f);\n    }\n}\n```\n',
            1,
            "Rendering",
        )
        urdf = source("- **Inertial properties**: mass, centre of mass, inertia\n", 2, "URDF")
        text = answer("Which material properties does the PBR example configure?", materials, urdf)
        assert text.startswith("```csharp\npublic class PBRMaterialController")
        assert "Inertial" not in text

    def test_a_definition_of_what_is_asked_stays_the_answer_over_code(self) -> None:
        nav2 = source(
            "## Nav2\n\nNav2 is the ROS 2 navigation stack.\n\n```yaml\n# nav2 controller\n"
            "controller_server:\n  plugin: nav2_regulated_pure_pursuit\n```\n"
        )
        text = answer("What is Nav2 and which controller plugin does it load?", nav2)
        assert text.startswith("Nav2 is the ROS 2 navigation stack. [1]")
        assert "```" not in text

    def test_half_a_code_block_is_never_quoted(self) -> None:
        # A chunk can end inside a long fence: what is left of it must not be quoted.
        cut = source(
            "### Writing a publisher\n\nTo create a publisher, call create_publisher:\n\n"
            "```python\nself.pub = self.create_publisher(\n    String,\n"
        )
        text = answer("How do I create a publisher?", cut)
        assert "```" not in text
        assert "String" not in text

    def test_a_piece_of_a_split_code_block_is_quoted_as_a_piece(self) -> None:
        # The chunker split a long node; its first piece looks whole (it starts at the margin,
        # its brackets balance), but the node goes on in the next chunks.
        node = "\n".join(
            [
                "### A patrol node",
                "",
                "The patrol node stops the robot when laser scans stop arriving.",
                "",
                "```python",
                "class PatrolNode(Node):",
                "    def __init__(self):",
                "        super().__init__('patrol')",
                *(f"        self.declare_parameter('p{i}', {i})" for i in range(40)),
                "```",
            ]
        )
        question = "How do I write the patrol node?"
        assert "self.declare_parameter('p39', 39)\n```" in answer(question, source(node))
        pieces = chunk_document(node, title="Patrol", target_tokens=150, max_tokens=200)
        assert len(pieces) > 1
        given = [source(p.text, i) for i, p in enumerate(pieces, 1)]
        text = answer(question, *given)
        # The first piece answers, after the sentence that introduces it, and says what it is.
        parts = sum("```" in p.text for p in pieces)
        assert parts > 1
        assert "The patrol node stops the robot when laser scans stop arriving. [" in text
        assert "class PatrolNode(Node):" in text
        assert "self.declare_parameter('p39', 39)" not in text
        assert text.endswith(
            f"]\n\n(Part 1 of {parts} of this code block: its page has all of it.)"
        )
        quotes = quoted_passages(text)
        assert quotes
        for quote, marker in quotes:
            assert quote in plain_text(given[marker - 1].text)

    def test_a_name_in_a_code_comment_does_not_make_the_code_the_answer(self) -> None:
        kit = source(
            "### Professional Edge Kit\n\n- NVIDIA Jetson AGX Orin 64GB ($1,999)\n"
            "- 3D LiDAR (Ouster OS0) ($3,500)\n",
            1,
            "Edge Kits",
        )
        gazebo = source(
            "### 3D LiDAR\n\n```xml\n<!-- Gazebo 3D LiDAR sensor -->\n"
            '<sensor name="lidar_3d" type="gpu_ray">\n  <update_rate>10</update_rate>\n'
            "</sensor>\n```\n",
            2,
            "Sensor Simulation",
        )
        text = answer("Which 3D LiDAR does the professional edge kit use?", kit, gazebo)
        assert "```" not in text
        assert "3D LiDAR (Ouster OS0) ($3,500) [1]" in text
        # Named in the code itself, it is the code the reader asks about.
        named = answer("Where is the LiDAR sensor's update_rate set?", kit, gazebo)
        assert named.startswith("```xml")

    def test_one_sentence_per_source_in_order_of_relevance(self) -> None:
        sources = [
            source(
                "Gazebo simulates physics and sensors. Gazebo physics plugins simulate contact.",
                1,
                "Gazebo",
            ),
            source(
                "Isaac Sim simulates physics on GPUs. Its physics simulation runs on PhysX.",
                2,
                "Isaac",
            ),
            source("MuJoCo simulates contact-rich physics quickly.", 3, "MuJoCo"),
        ]
        text = answer("Which simulators simulate physics?", *sources)
        assert [marker for _, marker in quoted_passages(text)] == [1, 2, 3]
        assert "plugins" not in text
        assert "PhysX" not in text

    def test_a_dominant_source_may_give_more_than_one_sentence(self) -> None:
        sources = [
            source(
                "## Balance\n\nA biped keeps its balance by keeping the zero moment point inside "
                "the support polygon. When the zero moment point leaves the support polygon the "
                "biped tips over.",
                1,
                "Walking",
            ),
            source("Wheeled robots need no balance controller at rest.", 2, "Wheels"),
        ]
        text = answer(
            "How does a biped keep the zero moment point in the support polygon?", *sources
        )
        assert text.startswith("A biped keeps its balance by keeping the zero moment point")
        assert "tips over. [1]" in text

    def test_the_items_of_a_list_answer_the_parts_of_a_question(self) -> None:
        build = source(
            "## Threadripper build\n\n- **CPU**: AMD Threadripper PRO 5975WX\n"
            "- **GPU**: NVIDIA RTX 4090 (24GB)\n- **RAM**: 128GB DDR4\n",
            1,
        )
        gpus = source(
            "A GPU speeds up simulation. Every GPU here needs a driver. The GPU renders scenes.", 2
        )
        text = answer("Which CPU and GPU are in the Threadripper build?", build, gpus)
        assert text == "CPU: AMD Threadripper PRO 5975WX [1] GPU: NVIDIA RTX 4090 (24GB) [1]"

    def test_a_spec_sheet_answers_for_its_own_robot_with_its_nested_lists(self) -> None:
        # The book writes "DOF" where the reader writes "degrees of freedom", nests the sensors
        # under a one-word label, and names the robot only in the heading above the sheet.
        def robot(name: str, dof: str, sensors: tuple[str, ...], index: int) -> Source:
            nested = "".join(f"  - {sensor}\n" for sensor in sensors)
            return source(
                f"### {name}\n\n**Specifications**:\n- **Weight**: 15 kg\n"
                f"- **Sensors**:\n{nested}- **DOF**: {dof}\n",
                index,
                "Robot Tiers",
            )

        humanoid = robot("Unitree G1", "23-43", ("Depth camera", "3D LiDAR"), 1)
        quadruped = robot("Unitree Go2", "12 (3 per leg)", ("4x fisheye cameras", "1x LiDAR"), 2)
        intro = source("Robot Hardware (optional): Unitree Go2 or Unitree G1 (humanoid)", 3)
        question = "How many degrees of freedom does the Unitree Go2 have and what sensors?"
        text = answer(question, humanoid, quadruped, intro)
        assert "DOF: 12 (3 per leg) [2]" in text
        assert "Sensors: [2]\n\n- 4x fisheye cameras\n- 1x LiDAR\n\n[2]" in text
        assert "23-43" not in text
        for quote, marker in quoted_passages(text):
            assert quote in plain_text((humanoid, quadruped, intro)[marker - 1].text)

    def test_an_acronym_stands_for_the_words_it_spells_only(self) -> None:
        sheet = source("- **DOF**: 12 (3 per leg)\n- **IMU**: 9-axis, 1 kHz\n")
        assert answer("How many degrees of freedom does it have?", sheet) == (
            "DOF: 12 (3 per leg) [1]"
        )
        assert answer("Which inertial measurement unit is fitted?", sheet) == (
            "IMU: 9-axis, 1 kHz [1]"
        )
        # Words that spell nothing the sheet says leave it unanswered.
        assert answer("How fast does it walk on flat ground?", sheet).startswith(
            NOTHING_QUOTABLE_ANSWER
        )

    def test_a_label_nested_list_is_offered_whole_only_when_asked_about(self) -> None:
        (label,) = [
            s
            for s in read_passage("- **Sensors**:\n  - Depth camera\n  - LiDAR\n").sentences
            if s.lead_in
        ]
        assert (label.text, label.items) == ("Sensors:", ("Depth camera", "LiDAR"))
        sheet = source("- **Sensors**:\n  - Depth camera\n  - LiDAR\n- **Weight**: 35 kg\n")
        offered = [r for r in Ranking("How heavy is it?", [sheet]).candidates if r.sentence.items]
        assert offered == []
        # A code block inside the nested list cuts it: the label is not offered with a part.
        cut = read_passage(
            "- **Install**:\n  - Update the package index\n  ```bash\n  apt update\n  ```\n"
            "  - Install the driver package\n"
        )
        assert [s.items for s in cut.sentences if s.lead_in] == []
        # A quiz's "Answer:" over its options is never a label to quote.
        quiz = read_passage("- **Answer**:\n  - B) a topic\n  - C) a service\n")
        assert [s.items for s in quiz.sentences if s.lead_in] == []

    def test_every_quoted_passage_is_in_its_source(self) -> None:
        sources = [
            source(TOPICS + "\n" + PUBLISHER_CODE, 1),
            source(
                "- **Topics** carry messages; see [topics](topics.md)\n- Services answer calls",
                2,
            ),
        ]
        for question in ("What do topics carry?", "How do I create a publisher on a topic?"):
            text = answer(question, *sources)
            quotes = quoted_passages(text)
            assert quotes
            for quote, marker in quotes:
                assert quote in plain_text(sources[marker - 1].text)

    def test_the_items_under_a_heading_that_names_the_question_answer_it(self) -> None:
        scenarios = source(
            "## Test Scenarios\n\n1. **Simple fetch task** for the robot\n"
            "   - Command: bring me the cup from the table\n"
            "2. **Multi-step task** for the robot\n   - Command: clean up the room\n",
            1,
            "Capstone",
        )
        practices = source(
            "- **Safety** - Validate dangerous scenarios without risk\n"
            "- **Coverage** - Test degraded sensor inputs in simulation\n",
            2,
            "Simulation",
        )
        text = answer(
            "Which test scenarios are used to validate the assistant?", scenarios, practices
        )
        assert "Simple fetch task for the robot [1]" in text

    def test_a_sentence_sharing_one_word_with_the_question_is_not_an_answer(self) -> None:
        practices = source(
            "## Best practices\n\n- **Assess use case** - Match robot to application\n"
            "- **Budget for maintenance** - Parts wear out\n",
            1,
        )
        kits = source("Edge kits run the robot's models on board, without a network.", 2)
        # One of its seven topic words: "assessed".
        question = (
            "How are the marks split between the parts when my final course work is assessed?"
        )
        text = answer(question, practices, kits)
        assert quoted_passages(text) == []
        assert "[1]" in text
        assert "Assess use case" not in text

    def test_sources_with_nothing_quotable_are_pointed_to(self) -> None:
        code_only = source("```bash\nros2 doctor --report\n```", 1)
        unrelated = source("Cameras see colour. Lidars measure range.", 2)
        text = answer("Why does ros2 doctor report a warning?", code_only, unrelated)
        assert "no book content" not in text
        assert "[1]" in text
        assert "[2]" in text
        assert quoted_passages(text) == []


ROBOT_TABLE = source(
    "## Comparison: Go2 vs G1\n\n### Locomotion\n\n"
    "| Feature | Go2 (Quadruped) | G1 (Humanoid) |\n|---------|:---:|---:|\n"
    "| **Stability** | High (4 legs) | Moderate (2 legs) |\n"
    "| Speed | Up to 5 m/s | Up to 2 m/s |\n"
    "| Terrain | Excellent | Good |\n"
    "| Stairs | Limited | Excellent |\n",
    1,
    "Robot tiers",
)
ROBOT_INTRO = source(
    "- **Robot hardware** (optional): Unitree Go2 (quadruped) or Unitree G1 (humanoid)\n",
    2,
    "Introduction",
)


class TestTables:
    def test_a_comparison_gets_the_header_and_the_rows_asked_about(self) -> None:
        text = answer(
            "How do the Go2 quadruped and G1 humanoid compare in stability and stair climbing?",
            ROBOT_TABLE,
            ROBOT_INTRO,
        )
        assert text == (
            "| Feature | Go2 (Quadruped) | G1 (Humanoid) |\n| --- | --- | --- |\n"
            "| Stability | High (4 legs) | Moderate (2 legs) |\n"
            "| Stairs | Limited | Excellent |\n\n[1]"
        )

    def test_every_row_quoted_is_a_line_of_its_source(self) -> None:
        text = answer("Which terrain and speed can the Go2 and the G1 handle?", ROBOT_TABLE)
        quotes = quoted_passages(text)
        assert [quote for quote, _ in quotes] == [
            "Feature | Go2 (Quadruped) | G1 (Humanoid)",
            "Speed | Up to 5 m/s | Up to 2 m/s",
            "Terrain | Excellent | Good",
        ]
        lines = plain_text(ROBOT_TABLE.text).splitlines()
        assert all(quote in lines and marker == 1 for quote, marker in quotes)

    def test_a_table_introduced_by_a_sentence_is_quoted_after_it(self) -> None:
        kits = source(
            "The three edge kits differ in compute and price.\n\n"
            "| Kit | Compute | Price |\n| --- | --- | --- |\n"
            "| Starter | Jetson Orin Nano | $499 |\n| Pro | Jetson Orin NX | $899 |\n"
        )
        text = answer("Which compute and price do the edge kits have?", kits)
        assert text.startswith("The three edge kits differ in compute and price. [1]\n\n| Kit |")
        assert "| Pro | Jetson Orin NX | $899 |" in text

    def test_why_questions_and_tables_without_a_header_get_prose(self) -> None:
        why = answer("Why is the Go2 stable on stairs?", ROBOT_TABLE, ROBOT_INTRO)
        headless = source(ROBOT_TABLE.text.replace("|---------|:---:|---:|\n", ""), 1)
        plain = answer("How do the Go2 and G1 compare in stability?", headless, ROBOT_INTRO)
        assert "|" not in why
        assert "|" not in plain


class TestSelection:
    SELECTED = (
        "Physical AI operates in real-time environments. A controller that waits for a slow "
        "perception model lets the robot fall. Sensors are noisy, so every estimate carries "
        "uncertainty. Engineers therefore budget latency for each stage of the loop."
    )

    def test_explain_this_quotes_part_of_the_selection_not_all_of_it(self) -> None:
        text = answer("Explain this", selection(self.SELECTED))
        quotes = sentences_of(text)
        assert 1 <= len(quotes) <= 2
        assert quotes[0] == "Physical AI operates in real-time environments."
        assert len(text) < len(self.SELECTED) / 2 + 10

    def test_a_question_quotes_the_sentences_that_answer_it(self) -> None:
        text = answer("Why do estimates carry uncertainty?", selection(self.SELECTED))
        assert text == "Sensors are noisy, so every estimate carries uncertainty. [1]"

    def test_an_unrelated_question_is_not_answered_from_the_selection(self) -> None:
        text = answer("What is quantum computing?", selection(self.SELECTED))
        assert "[1]" not in text
        assert "selected text" in text.lower()
        assert "quantum" in text.lower()
        assert "Physical AI operates" not in text

    def test_a_refusal_names_what_is_asked_about_not_how_it_is_asked(self) -> None:
        # "How much" and "how many" ask for a quantity; neither names what the selection lacks.
        # The words named are the reader's, as they wrote them.
        much = answer("How much does a Jetson Orin Nano cost?", selection(self.SELECTED))
        many = answer("How many cameras does the Go2 carry?", selection(self.SELECTED))
        assert much == (
            "The selected text does not answer this: it does not mention “Jetson” or “Orin” "
            "or “Nano”. Ask again without a selection to search the whole book."
        )
        assert "“many”" not in many
        assert "“cameras”" in many


class ConceptEmbedder:
    """A dense embedder whose vectors place synonyms together (a fake of a real model)."""

    name = "concepts"
    dimension = 3
    max_input_tokens = 512
    CONCEPTS = (("sight", "camera", "see", "vision"), ("legs", "walk", "gait"), ("wheel",))

    def __init__(self) -> None:
        self.calls = 0

    def _vector(self, text: str) -> list[float]:
        words = re.findall(r"[a-z]+", text.lower())
        vector = [
            float(sum(w.startswith(c) for w in words for c in group)) for group in self.CONCEPTS
        ]
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def ensure_ready(self) -> None:
        return None

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return [self._vector(text) for text in texts]

    async def embed_query(self, text: str) -> list[float]:
        return self._vector(text)

    async def aclose(self) -> None:
        return None


SENSES = [
    source("Robots need power. Cameras give a robot vision of its surroundings.", 1, "Senses"),
]


@pytest.fixture
async def failing_embedder(fake_openai: FakeOpenAIServer) -> AsyncIterator[OpenAIEmbedder]:
    embedder = OpenAIEmbedder(
        model="text-embedding-3-small",
        api_key="sk-test",
        base_url=fake_openai.base_url,
        timeout=2.0,
        max_retries=0,
    )
    yield embedder
    await embedder.aclose()


class TestDenseRanking:
    async def test_a_paraphrase_is_found_by_meaning(self) -> None:
        embedder = ConceptEmbedder()
        model = ExtractiveChatModel(embedder=embedder)
        prompt = ChatPrompt(messages=[], question="How does a robot see?", sources=SENSES)
        completion = await model.complete(prompt)
        assert completion.text == "Cameras give a robot vision of its surroundings. [1]"
        assert embedder.calls == 1

    async def test_a_sentence_neither_sharing_words_nor_close_in_meaning_is_not_quoted(
        self,
    ) -> None:
        far = [source("A camera films while the legs walk. Wheels turn slowly in mud.", 1, "Drive")]
        model = ExtractiveChatModel(embedder=ConceptEmbedder())
        prompt = ChatPrompt(messages=[], question="How does a robot see?", sources=far)
        completion = await model.complete(prompt)
        assert quoted_passages(completion.text) == []
        assert "[1]" in completion.text

    async def test_a_failing_embedder_falls_back_to_words(
        self, fake_openai: FakeOpenAIServer, failing_embedder: OpenAIEmbedder
    ) -> None:
        fake_openai.fail_next(500, times=10)
        model = ExtractiveChatModel(embedder=failing_embedder)
        prompt = ChatPrompt(messages=[], question="What does Gazebo simulate?", sources=[GAZEBO])
        completion = await model.complete(prompt)
        assert completion.text == answer("What does Gazebo simulate?", GAZEBO)

    async def test_a_hanging_embedder_does_not_hold_the_answer(
        self, fake_openai: FakeOpenAIServer, failing_embedder: OpenAIEmbedder
    ) -> None:
        fake_openai.hang_next(30.0, times=10)
        model = ExtractiveChatModel(embedder=failing_embedder, embed_timeout=0.2)
        prompt = ChatPrompt(messages=[], question="What does Gazebo simulate?", sources=[GAZEBO])
        completion = await asyncio.wait_for(model.complete(prompt), timeout=10)
        assert completion.text == "Gazebo simulates physics, sensors and actuators. [2]"


class TestStreaming:
    @pytest.mark.parametrize(
        ("question", "sources"),
        [
            ("What does Gazebo simulate?", [GAZEBO]),
            ("How do I create a publisher?", [source(PUBLISHER_CODE)]),
            ("Explain this", [selection(TestSelection.SELECTED)]),
        ],
    )
    async def test_stream_matches_complete(self, question: str, sources: list[Source]) -> None:
        model = ExtractiveChatModel()
        prompt = ChatPrompt(messages=[], question=question, sources=sources)
        completion = await model.complete(prompt)
        items = [item async for item in model.stream(prompt)]
        *pieces, finish = items
        # Text only (the offline model counts nothing), then its word that the answer is whole.
        assert all(isinstance(piece, str) for piece in pieces)
        assert finish == Finish("stop") == Finish(completion.finish_reason or "")
        assert "".join(str(piece) for piece in pieces) == completion.text
        assert len(pieces) > 1
        assert completion.model == "extractive"
        await model.aclose()


class TestQuotablePassages:
    def test_headings_tables_admonitions_and_lead_ins_are_not_quoted(self) -> None:
        text = (
            "### A Minimal Publisher\n\nThis node publishes a counter every second.\n\n"
            "The node is created as follows:\n\n```python\nnode = Node('talker')\n```\n\n"
            "| sensor | rate |\n| --- | --- |\n| IMU | 200 Hz |\n\n"
            ":::tip Remember\nQueues drop old messages when they are full.\n:::\n\n"
            "- Publishers never wait for subscribers to read a message."
        )
        quoted = sentences_of(answer("publishes counter queues drop publishers wait", source(text)))
        assert sorted(quoted) == sorted(
            [
                "This node publishes a counter every second.",
                "Queues drop old messages when they are full.",
                "Publishers never wait for subscribers to read a message.",
            ]
        )

    def test_a_lead_in_carries_the_list_that_follows_it_when_it_can_be_quoted_whole(
        self,
    ) -> None:
        def lead_in(markdown: str) -> Sentence:
            return next(s for s in read_passage(markdown).sentences if s.lead_in)

        listed = "A graph holds:\n\n- **Nodes** that compute\n- Topics that carry data\n"
        assert lead_in(listed).items == ("Nodes that compute", "Topics that carry data")
        # A checklist item, a quiz option, a list too long to quote whole, or a paragraph
        # between them: the lead-in introduces nothing it could be quoted with.
        for markdown in (
            "A graph holds:\n\n- [ ] Nodes that compute\n- Topics that carry data\n",
            "A graph holds:\n\n- A) Nodes that compute\n- Topics that carry data\n",
            "A graph holds:\n\n" + "".join(f"- Item number {n} here\n" for n in range(9)),
            "A graph holds:\n\nNodes compute things.\n\n- Topics that carry data\n",
            "A graph holds:\n\n- Nodes that compute\n-\n- Topics that carry data\n",
        ):
            assert lead_in(markdown).items == ()

    def test_overlapping_chunks_are_not_quoted_twice(self) -> None:
        first = Source(index=1, title="A", text="Topics carry messages between nodes. Nodes run.")
        second = Source(index=2, title="A", text="Topics carry messages between nodes. More text.")
        text = answer("What do topics carry between nodes?", first, second)
        assert text.count("Topics carry messages between nodes.") == 1

    def test_plain_text_is_what_a_reader_sees(self) -> None:
        markdown = (
            "## Setup\n\n**Install** the [toolkit](setup.md) with `apt`:\n\n"
            "```bash\nsudo apt install toolkit\n```\n\n- first item\n- second *item*\n"
        )
        assert plain_text(markdown) == (
            "Setup\nInstall the toolkit with apt:\nsudo apt install toolkit\n"
            "first item\nsecond item"
        )
